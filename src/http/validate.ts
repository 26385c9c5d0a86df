import type { z } from 'zod';
import { type FieldError, ProblemError } from './problem.ts';

/** Parses with a zod schema; a failure becomes a 400 naming every field at fault. */
export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  input: unknown,
  where: 'body' | 'query' | 'params',
): z.infer<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const errors: FieldError[] = result.error.issues.slice(0, 50).flatMap((issue) => {
    const path = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ field: [...path, key].join('.'), message: 'is not a known field' }));
    }
    return [{ field: path.join('.') || where, message: issue.message }];
  });
  throw new ProblemError('validation_failed', {
    detail: `Invalid ${where}: ${errors.map((e) => e.field).join(', ')}`,
    errors,
  });
}
