// The authority's refusals, each carrying the gRPC status the Identity API answers with (the
// codes are fixed by the header of src/api/identity.proto); the message says what was wrong.
import { TrellisError } from '../../core/errors.ts';

export type IdentityStatus = 'INVALID_ARGUMENT' | 'UNAUTHENTICATED' | 'PERMISSION_DENIED' | 'UNAVAILABLE';

export class IdentityError extends TrellisError {
  readonly status: IdentityStatus;
  /** A refusal that is part of a normal start (logged at debug, not info): see tokens.ts. */
  readonly expected: boolean;
  constructor(status: IdentityStatus, message: string, options?: { cause?: unknown; expected?: boolean }) {
    super(`TRELLIS_ERR_IDENTITY_${status}`, message, options);
    this.status = status;
    this.expected = options?.expected === true;
    this.name = 'IdentityError';
  }
}
