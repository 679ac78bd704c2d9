// GSD error codes (SPEC.md 9.2). A decoder reports every rejection as one GsdError whose
// `code` is the name below; `number` is the stable numeric code.
export const ERROR_CODES = Object.freeze({
  TRUNCATED: 1, BAD_MAGIC: 2, UNSUPPORTED_VERSION: 3, BAD_CHECKSUM: 4, MALFORMED: 5,
  UNSUPPORTED_FEATURE: 6, LIMIT_EXCEEDED: 7, DECOMPRESSION_FAILED: 8, BAD_VALUE: 9,
  DUPLICATE_ID: 10, ID_EXISTS: 11, ID_MISSING: 12, SEQUENCE_GAP: 13, DIGEST_MISMATCH: 14,
  BAD_HEADER: 15,
});

export class GsdError extends Error {
  constructor(code, message) {
    super(`${code}: ${message || code}`);
    if (!(code in ERROR_CODES)) throw new TypeError(`unknown GSD error code ${code}`);
    this.name = 'GsdError';
    this.code = code;               // string name, e.g. 'BAD_CHECKSUM'
    this.number = ERROR_CODES[code];
  }
}

export function fail(code, message) {
  throw new GsdError(code, message);
}
