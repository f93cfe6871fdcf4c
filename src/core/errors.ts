// Errors with stable codes. Every error Trellis raises on purpose is a TrellisError whose `code`
// starts with TRELLIS_ERR_, so scripts and tests can match on it instead of on the message.

export class TrellisError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'TrellisError';
  }
}

/** A configuration problem: `field` is the dotted path of the setting that is wrong. */
export class ConfigError extends TrellisError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('TRELLIS_ERR_CONFIG', field ? `${field}: ${message}` : message);
    this.field = field;
    this.name = 'ConfigError';
  }
}
