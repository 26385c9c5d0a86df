export const SCOPES = ['signup', 'keys', 'enforce', 'ingest', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface Principal {
  /** The token id (`tok_…`), or `admin` for the bootstrap token from the environment. */
  tokenId: string;
  name: string;
  scopes: readonly Scope[];
}

/** `admin` may do everything; other scopes grant exactly themselves. */
export function hasScope(principal: Principal, scope: Scope): boolean {
  return principal.scopes.includes('admin') || principal.scopes.includes(scope);
}
