import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse as parseYaml } from 'yaml';
import type { TestResponse } from './harness.ts';

// Checks real responses against openapi.yaml: the document is the contract, and every route test
// passes its responses through `expectContract`.

type Json = Record<string, unknown>;
interface Operation {
  method: string;
  template: string;
  matcher: RegExp;
  scopes: string[] | null;
  responses: Record<string, Json>;
}

const doc = parseYaml(readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8')) as Json;
const rewritten = JSON.parse(
  JSON.stringify(doc).replaceAll('"#/components/', '"openapi.json#/components/'),
) as Json;

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: 'openapi.json', components: rewritten.components }, 'openapi.json');

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
const globalSecurity = (doc.security as Array<Record<string, string[]>> | undefined) ?? [];

export const operations: Operation[] = [];
for (const [template, item] of Object.entries(rewritten.paths as Record<string, Json>)) {
  for (const method of METHODS) {
    const op = item[method] as Json | undefined;
    if (!op) continue;
    const security = (op.security as Array<Record<string, string[]>> | undefined) ?? globalSecurity;
    const scopes = security.length === 0 ? null : security.flatMap((req) => Object.values(req).flat());
    const pattern = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+');
    operations.push({
      method: method.toUpperCase(),
      template,
      matcher: new RegExp(`^${pattern.replace(/\{[^}]+\}/g, '[^/]+')}$`),
      scopes,
      responses: op.responses as Record<string, Json>,
    });
  }
}

function resolve(obj: Json): Json {
  const ref = obj.$ref as string | undefined;
  if (!ref) return obj;
  const path = ref.replace(/^openapi\.json#\//, '').split('/');
  let node: unknown = rewritten;
  for (const part of path) node = (node as Json)[part];
  return resolve(node as Json);
}

export function findOperation(method: string, path: string): Operation {
  const bare = path.split('?')[0]!;
  const op = operations.find((o) => o.method === method.toUpperCase() && o.matcher.test(bare));
  if (!op) throw new Error(`openapi.yaml has no operation for ${method} ${bare}`);
  return op;
}

/** Throws unless the response's status, media type and body are what openapi.yaml promises. */
export function expectContract(res: TestResponse, method: string, path: string): void {
  const op = findOperation(method, path);
  const declared = op.responses[String(res.status)] ?? op.responses.default;
  if (!declared) {
    throw new Error(
      `${method} ${op.template}: status ${res.status} is not declared (body: ${res.text.slice(0, 300)})`,
    );
  }
  const response = resolve(declared);
  const content = response.content as Record<string, Json> | undefined;
  if (!content) {
    if (res.text !== '')
      throw new Error(`${method} ${op.template} ${res.status}: declared without a body but got one`);
    return;
  }
  const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
  const media = content[mediaType];
  if (!media) {
    throw new Error(
      `${method} ${op.template} ${res.status}: media type ${mediaType} not declared (${Object.keys(content).join(', ')})`,
    );
  }
  if (!media.schema) return;
  const validate = ajv.compile(media.schema as Json);
  if (!validate(res.body)) {
    throw new Error(
      `${method} ${op.template} ${res.status}: body does not match openapi.yaml: ${ajv.errorsText(validate.errors)}\n${res.text.slice(0, 500)}`,
    );
  }
}
