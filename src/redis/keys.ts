// Every Redis key name Gatehouse uses is built here, so the layout can be read in one place.
//
// Redis Cluster: a Lua script may only touch keys in one hash slot, so keys that one script uses
// together share a hash tag (the part in braces). All counters of one enforcement or signup decision,
// and the usage stream that decision appends to, share the `{prefix:lim}` tag; caches, replay guards
// and the BullMQ queues carry their own tags so they spread across the cluster.

export interface RedisKeys {
  readonly prefix: string;
  /** BullMQ `prefix` option: every queue of this deployment under one tag. */
  readonly bullPrefix: string;
  /** One sliding-window hash per (dimension, value, window). */
  window(dimension: string, value: string, windowName: string): string;
  /** One hash per quota dimension and value, holding every window of it (each in its own slot). */
  quota(dimension: string, value: string): string;
  /** The usage event stream appended by enforcement and drained by the ingestion worker. */
  usageStream(): string;
  /** A captcha token already seen (by its sha256). */
  captchaSeen(tokenHash: string): string;
  /** The pub/sub channel that tells every API instance to drop cached keys and accounts. */
  invalidationChannel(): string;
  /** A short-lived lock or cooldown marker. */
  cooldown(kind: string, value: string): string;
}

export function createKeys(prefix: string): RedisKeys {
  const lim = `{${prefix}:lim}`;
  return {
    prefix,
    bullPrefix: `{${prefix}:bull}`,
    window: (dimension, value, windowName) => `${lim}:w:${dimension}:${windowName}:${value}`,
    quota: (dimension, value) => `${lim}:q:${dimension}:${value}`,
    usageStream: () => `${lim}:usage`,
    captchaSeen: (tokenHash) => `{${prefix}:captcha}:${tokenHash}`,
    invalidationChannel: () => `${prefix}:invalidate`,
    cooldown: (kind, value) => `{${prefix}:cd}:${kind}:${value}`,
  };
}
