import type { EnforcementDecision } from './decide.ts';

// The enforcement answer as JSON text, written out rather than through JSON.stringify.
//
// JSON.stringify walks the answer generically: for ten windows it checks and escapes about fifty
// strings (every key and every window name) and converts forty numbers, ~28k instructions a
// decision under callgrind, 7% of the API thread's work. Here the part of a window that repeats
// from call to call, `{"name":<its name>,"limit":`, is escaped once per name and kept, and only
// the numbers and the account id are written per call. The fields are those of
// EnforcementDecision, always in this order; test/unit/answer.test.ts checks the text parses to
// what JSON.stringify would have given, for any decision.

const windowHeads = new Map<string, string>();

function windowHead(name: string): string {
  let head = windowHeads.get(name);
  if (head === undefined) {
    head = `{"name":${JSON.stringify(name)},"limit":`;
    // Names come from the policy's tiers, so there are few; the cap guards against surprises.
    if (windowHeads.size >= 1_000) windowHeads.clear();
    windowHeads.set(name, head);
  }
  return head;
}

/** A number as JSON writes it: non-finite values become null. */
const num = (v: number): string | number => (Number.isFinite(v) ? v : 'null');

export function answerJson(o: EnforcementDecision): string {
  let s = `{"decision":${JSON.stringify(o.decision)}`;
  if (o.reason !== undefined) s += `,"reason":${JSON.stringify(o.reason)}`;
  if (o.accountId !== undefined) s += `,"accountId":${JSON.stringify(o.accountId)}`;
  if (o.delayMs !== undefined) s += `,"delayMs":${num(o.delayMs)}`;
  if (o.retryAfterMs !== undefined) s += `,"retryAfterMs":${num(o.retryAfterMs)}`;
  if (o.degrade !== undefined) s += `,"degrade":${o.degrade ? 'true' : 'false'}`;
  s += ',"limits":[';
  const limits = o.limits;
  for (let i = 0; i < limits.length; i++) {
    const l = limits[i]!;
    if (i > 0) s += ',';
    s += `${windowHead(l.name)}${num(l.limit)},"remaining":${num(l.remaining)},"resetSeconds":${num(l.resetSeconds)}}`;
  }
  return `${s}]}`;
}
