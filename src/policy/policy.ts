import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

// The policy file holds every threshold and limit an operator tunes (YAML or JSON), validated at
// start: a wrong value stops the process with the path of the setting at fault.

export const policySchema = z.strictObject({
  version: z.literal(1),
  retention: z
    .strictObject({
      /** Verification secrets (hashes) are purged this long after they expired. */
      verificationsDays: z.number().int().min(1).max(3650).default(7),
    })
    .default({ verificationsDays: 7 }),
});

export type Policy = z.infer<typeof policySchema>;

export class PolicyError extends Error {}

export function parsePolicy(text: string, source = 'policy'): Policy {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new PolicyError(`${source}: not valid YAML or JSON (${(err as Error).message.split('\n')[0]})`);
  }
  const result = policySchema.safeParse(raw ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const at = issue.path.join('.') || '(root)';
    throw new PolicyError(`${source}: ${at}: ${issue.message}`);
  }
  return result.data;
}

export function loadPolicy(path: string): Policy {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PolicyError(
      `POLICY_PATH ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  return parsePolicy(text, path);
}
