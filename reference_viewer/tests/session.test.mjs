// The session client's reaction to a close: a busy server's retry-after (SPEC.md 11.7) is honoured.
import { test } from 'node:test';
import assert from 'node:assert/strict';

class FakeSocket {
  static made = [];
  constructor(url) { this.url = url; this.readyState = 0; FakeSocket.made.push(this); }
  send() {}
  close() { this.readyState = 3; }
}

async function session() {
  globalThis.WebSocket = FakeSocket;
  const { Session } = await import('../app/session.mjs');
  return new Session({ url: 'ws://127.0.0.1:1/ws', reconnect: true });
}

test('1013 with retry-after=N: reconnects after N to 1.5 N seconds and says the server is busy', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const s = await session();
  FakeSocket.made.length = 0;
  s.connect();
  FakeSocket.made[0].onclose({ code: 1013, reason: 'retry-after=4 server busy: worlds 90% busy > 70%' });
  assert.equal(s.closeInfo.busy, true);
  assert.ok(s.closeInfo.retryAfterMs >= 4000 && s.closeInfo.retryAfterMs <= 6000, String(s.closeInfo.retryAfterMs));
  t.mock.timers.tick(3999);
  assert.equal(FakeSocket.made.length, 1);
  t.mock.timers.tick(2001);
  assert.equal(FakeSocket.made.length, 2);
  s.close();
});

test('any other close: the usual backoff, no busy flag', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const s = await session();
  FakeSocket.made.length = 0;
  s.connect();
  const first = s.retryMs;
  FakeSocket.made[0].onclose({ code: 1006, reason: '' });
  assert.equal(s.closeInfo.busy, false);
  assert.equal(s.closeInfo.retryAfterMs, null);
  t.mock.timers.tick(first);
  assert.equal(FakeSocket.made.length, 2);
  assert.equal(s.retryMs, Math.min(first * 2, 15000));
  s.close();
});

test('the hello announces format versions 1.0 to 1.4 (SH palette streams, ranked ids, CHANNEL sections, gap-coded sections: SPEC.md 11.2)', async () => {
  const s = await session();
  FakeSocket.made.length = 0;
  s.connect();
  const ws = FakeSocket.made[0], sent = [];
  ws.send = (m) => sent.push(JSON.parse(m));
  ws.onopen();
  assert.equal(sent[0].type, 'hello');
  assert.equal(sent[0].protocol, 'gsd/1');
  assert.deepEqual(sent[0].versions, ['1.0', '1.1', '1.2', '1.3', '1.4']);
  s.close();
});
