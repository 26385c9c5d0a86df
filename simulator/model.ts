// What the simulator knows about each account it plays: who it really is (a person or a farm's
// account, never told to Gatehouse), how it signs up and how it uses the API day by day.

export const FARM_KINDS = [
  'bulk-disposable',
  'alias-farm',
  'distributed-slow',
  'reset-burst',
  'voip-phones',
] as const;
export type FarmKind = (typeof FARM_KINDS)[number];
export const SCENARIOS = [...FARM_KINDS, 'mixed'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export const DAY_MS = 86_400_000;

/** One client as Gatehouse sees it: the address and what the client says about itself. */
export interface ClientContext {
  ip: string;
  fingerprint?: string;
  tlsFingerprint?: string;
  userAgent: string;
  acceptLanguage?: string;
}

/** Where an account's API calls come from; a pool of addresses is drawn from per call. */
export interface Source {
  ips: string[];
  fingerprints: string[];
  tlsFingerprint?: string;
  userAgents: string[];
  weight: number;
}

export type Timing =
  /** A person: sessions at waking hours of their time zone, fewer at weekends. */
  | { kind: 'sessions'; tzOffsetHours: number; sessions: [number, number] }
  /** A scheduler: calls in shared minute slots of the day (UTC), with jitter in seconds. */
  | { kind: 'slots'; slots: number[]; jitterSeconds: number; skip: number }
  /** A cron job: every `everyMinutes` from `startMinute` (UTC), a few seconds late. */
  | { kind: 'cron'; startMinute: number; everyMinutes: number };

export type PromptPlan =
  | { kind: 'varied'; vocabulary: string[]; openers: number[] }
  | { kind: 'template'; templates: number[]; fills: number };

export interface UsagePlan {
  /** Calls made on an active day, before any limit: drawn uniformly in [min, max]. */
  dailyCalls: [number, number];
  weekdayActive: number;
  weekendActive: number;
  timing: Timing;
  /** Largest number of calls one minute holds (per-minute windows are 60 a key). */
  perMinute: [number, number];
  sources: Source[];
  /** Days spent on other networks (travel): those days' calls come from `travelSource`. */
  travelDays?: number[];
  travelSource?: Source;
  prompts: PromptPlan;
  endpoints: string[];
}

export interface SimAccount {
  /** Position within its group (the legitimate population, or its farm). */
  index: number;
  externalId: string;
  role: 'legit' | 'farm';
  /** The persona (legitimate users) or the farm's scenario: for the report, never sent. */
  group: string;
  email: string;
  /** The number the account verifies with when asked for a phone step-up. */
  phone: string | null;
  /** Sends `phone` with the signup itself. */
  phoneAtSignup: boolean;
  /**
   * Milliseconds from the start of day 0 (00:00 UTC); negative for accounts older than the run.
   * Signups on the last day, today, happen live; the others reach Gatehouse through the import.
   */
  signupAt: number;
  signup: ClientContext;
  /** Signs up a second time by mistake, with this address, some minutes later. */
  repeatEmail?: string;
  usage: UsagePlan;
}

/** One gateway log line as planned: `cost` calls made within one minute. */
export interface PlannedEvent {
  at: number;
  ip: string;
  fingerprint?: string;
  tlsFingerprint?: string;
  userAgent: string;
  endpoint: string;
  cost: number;
  query: string;
}

export interface Population {
  seed: number;
  scenario: ScenarioName;
  /** Legitimate users first, then the farm accounts. */
  accounts: SimAccount[];
  days: number;
  /** The daily quota of one account the plans were made for (the free tier's). */
  quota: number;
}

export const signupDay = (a: SimAccount): number => Math.floor(a.signupAt / DAY_MS);
