// RFC 9457 problem details. Every error Gatehouse returns is one of these codes, with a stable
// `type` URI; rejections add `reasons`, validation failures add `errors` naming the fields at fault.

export const PROBLEMS = {
  validation_failed: { status: 400, title: 'The request is not valid' },
  malformed_json: { status: 400, title: 'The request body is not valid JSON' },
  unauthenticated: { status: 401, title: 'A valid service token is required' },
  forbidden: { status: 403, title: 'The service token lacks the scope for this call' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  conflict: { status: 409, title: 'Conflict' },
  payload_too_large: { status: 413, title: 'The request body is too large' },
  unsupported_media_type: { status: 415, title: 'The request body must be application/json' },
  rate_limited: { status: 429, title: 'Too many requests' },
  internal_error: { status: 500, title: 'Internal error' },
  service_unavailable: { status: 503, title: 'A dependency is unavailable' },
} as const;

export type ProblemCode = keyof typeof PROBLEMS;

export interface FieldError {
  field: string;
  message: string;
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  code: string;
  detail?: string;
  instance?: string;
  reasons?: string[];
  errors?: FieldError[];
  [extension: string]: unknown;
}

export const problemType = (code: string) => `urn:gatehouse:problem:${code}`;

/** An expected failure that maps to a problem response (never a fault). */
export class ProblemError extends Error {
  readonly status: number;
  readonly code: string;
  readonly title: string;
  readonly extras: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(
    code: ProblemCode | { code: string; status: number; title: string },
    opts: {
      detail?: string;
      reasons?: string[];
      errors?: FieldError[];
      headers?: Record<string, string>;
      extras?: Record<string, unknown>;
    } = {},
  ) {
    const def = typeof code === 'string' ? { code, ...PROBLEMS[code] } : code;
    super(opts.detail ?? def.title);
    this.status = def.status;
    this.code = def.code;
    this.title = def.title;
    this.headers = opts.headers ?? {};
    this.extras = { ...opts.extras };
    if (opts.detail) this.extras.detail = opts.detail;
    if (opts.reasons) this.extras.reasons = opts.reasons;
    if (opts.errors) this.extras.errors = opts.errors;
  }

  body(instance?: string): ProblemBody {
    return {
      type: problemType(this.code),
      title: this.title,
      status: this.status,
      code: this.code,
      ...(instance ? { instance } : {}),
      ...this.extras,
    };
  }
}
