// Trellis' error codes: one class per code, stable strings, documented in docs/errors.md
// (a test keeps the two in sync). `instanceof` works across copies of the package
// because the check uses a global symbol brand, not the class identity.

const BRAND = Symbol.for('trellis.error');

export class TrellisError extends Error {
  readonly code: string = 'TRELLIS_ERR_INTERNAL';
  readonly [BRAND] = true;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this === TrellisError) return typeof value === 'object' && value !== null && BRAND in value;
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }
}

/** Every code, with the one-line meaning docs/errors.md repeats. */
export const ERROR_CODES = {
  TRELLIS_ERR_INTERNAL: 'a bug in Trellis; please report it with the command that caused it',
  TRELLIS_ERR_USAGE: 'a command line that Trellis cannot run: unknown command or flag, missing argument',
  TRELLIS_ERR_FILE_READ: 'a path that cannot be read: missing, unreadable, or not a file or directory',
  TRELLIS_ERR_FILE_TOO_LARGE: 'a configuration file over the size limit',
  TRELLIS_ERR_ENCODING: 'a file that is not valid UTF-8',
  TRELLIS_ERR_SYNTAX: 'a YAML, JSON or HuJSON syntax error (including tab indentation)',
  TRELLIS_ERR_DUPLICATE_KEY: 'the same key twice in one mapping',
  TRELLIS_ERR_ALIAS_LIMIT: 'a YAML document whose aliases expand beyond the limit (an "alias bomb")',
  TRELLIS_ERR_EMPTY: 'a file or document with no resources in it',
  TRELLIS_ERR_NOT_A_RESOURCE: 'a document that is not a resource: not a mapping, or no apiVersion or kind',
  TRELLIS_ERR_UNKNOWN_KIND: 'a kind Trellis does not read',
  TRELLIS_ERR_API_VERSION: 'a known kind with an apiVersion it is not served under',
  TRELLIS_ERR_UNKNOWN_FIELD: 'a field the kind does not have',
  TRELLIS_ERR_MISSING_FIELD: 'a required field that is absent',
  TRELLIS_ERR_INVALID_VALUE: 'a field whose value has the wrong type, format or range',
  TRELLIS_ERR_LIMIT_EXCEEDED: 'a list longer than the upstream limit (e.g. more than 16 HTTPRoute rules)',
  TRELLIS_ERR_DUPLICATE_RESOURCE: 'two resources with the same kind, namespace and name',
  TRELLIS_ERR_NO_RESOURCES: 'the paths given hold no resources at all',
  TRELLIS_ERR_CONTROL_PLANE: 'the control plane admin API cannot be reached (trellis apply, get, delete, proxy-status)',
  TRELLIS_ERR_WORKLOAD_API:
    'the SPIFFE Workload API cannot be served or reached: bad socket path or address, socket in use, no endpoint configured',
  TRELLIS_ERR_CA:
    'a certificate authority that cannot be created, loaded or used: bad or mismatched certificate/key, wrong trust domain, invalid SPIFFE ID',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class UsageError extends TrellisError {
  override readonly code = 'TRELLIS_ERR_USAGE';
}

export class FileReadError extends TrellisError {
  override readonly code = 'TRELLIS_ERR_FILE_READ';
}

export class WorkloadApiConfigError extends TrellisError {
  override readonly code = 'TRELLIS_ERR_WORKLOAD_API';
}
