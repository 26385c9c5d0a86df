import type { ApiGap, GatehouseApi } from './client.ts';
import type { Hooks } from './hooks.ts';
import type { Population, SimAccount } from './model.ts';
import type { Rng } from './rng.ts';

// What the simulator learns about each account from Gatehouse's answers as the run goes on; the
// report is computed from these records alone.

export type GatehouseStatus = 'pending' | 'active' | 'throttled' | 'challenged' | 'suspended';

/** Statuses in which an account gets nothing (challenged, suspended) or a cut quota (throttled). */
export const STOPPED: ReadonlySet<string> = new Set(['throttled', 'challenged', 'suspended']);

export interface LiveCalls {
  calls: number;
  served: number;
  decisions: Record<string, number>;
}

export interface AccountState {
  account: SimAccount;
  /** Gatehouse's id, once the account exists there. */
  id: string | null;
  /** How it came to exist: a live signup or the history import. */
  path: 'live' | 'import' | null;
  /** The signup answer: HTTP status and decision or problem code. */
  signup: { status: number; decision: string | null; code: string | null; reasons: string[] } | null;
  repeat: { status: number; code: string | null } | null;
  blockedAtSignup: boolean;
  challengedAtSignup: boolean;
  /** Refused by the import (the history could not be loaded for it). */
  importRefused: string | null;
  /** Reached `active` at least once, so it could hold a key. */
  activated: boolean;
  key: { id: string; secret: string } | null;
  status: string | null;
  /** The status read after each simulated day's analysis run. */
  statusByDay: Array<string | null>;
  /** The first simulated day it was stopped: blocked at signup, or found by detection. */
  caughtDay: number | null;
  ever: { throttled: boolean; challenged: boolean; suspended: boolean };
  stepUps: Array<{ day: number; outcome: string }>;
  /** The daily quota Gatehouse reports while the account is throttled. */
  throttledQuota: number | null;
  /** Calls planned and calls served per simulated day. */
  planned: number[];
  served: number[];
  live: LiveCalls;
  probe: { decision: string; reason: string | null } | null;
}

export function newState(account: SimAccount, days: number): AccountState {
  return {
    account,
    id: null,
    path: null,
    signup: null,
    repeat: null,
    blockedAtSignup: false,
    challengedAtSignup: false,
    importRefused: null,
    activated: false,
    key: null,
    status: null,
    statusByDay: Array.from({ length: days }, () => null),
    caughtDay: null,
    ever: { throttled: false, challenged: false, suspended: false },
    stepUps: [],
    throttledQuota: null,
    planned: Array.from({ length: days }, () => 0),
    served: Array.from({ length: days }, () => 0),
    live: { calls: 0, served: 0, decisions: {} },
    probe: null,
  };
}

/** Records a status Gatehouse reported, and when a farm account was first caught. */
export function noteStatus(state: AccountState, status: string, day: number): void {
  state.status = status;
  if (status === 'active') state.activated = true;
  if (status === 'throttled') state.ever.throttled = true;
  if (status === 'challenged') state.ever.challenged = true;
  if (status === 'suspended') state.ever.suspended = true;
  if (STOPPED.has(status) && state.caughtDay === null) state.caughtDay = day;
}

export interface Quota {
  /** A user's daily quota in the free tier, as assumed by the plans. */
  assumed: number;
  /** As Gatehouse reported it (`user:24h` of an enforcement answer); null until seen. */
  user: number | null;
  /** A device's daily quota across accounts (`device:24h`), when the tier has one. */
  device: number | null;
  source: string;
}

export interface DayRecord {
  day: number;
  /** Today, played live; the days before are history. */
  live: boolean;
  asOf: string;
  importedAccounts: number;
  events: number;
  eventsAccepted: number;
  ingestMs: number;
  run: { id: string; status: string; summary: unknown; error: string | null; ms: number } | null;
  sweepMs: number;
}

export interface Capabilities {
  importAccounts: boolean;
  usageEvents: boolean;
  analysis: boolean;
}

export interface RunRecord {
  states: AccountState[];
  days: DayRecord[];
  quota: Quota;
  capabilities: Capabilities;
  gaps: ApiGap[];
  notes: string[];
  /** Start of simulated day 0 (00:00 UTC of the day the run started). */
  dayZero: string;
  timings: { liveMs: number; historyMs: number; probeMs: number };
}

/** Everything one run's phases share. */
export interface DriveContext {
  api: GatehouseApi;
  hooks: Hooks;
  root: Rng;
  population: Population;
  states: AccountState[];
  /** Start of simulated day 0, ms since the epoch. */
  dayZero: number;
  quota: Quota;
  capabilities: Capabilities;
  notes: string[];
  log: (message: string) => void;
  options: {
    concurrency: number;
    signupsPerSecond: number;
    liveCallsPerAccount: number;
    liveExistingAccounts: number;
    maxBodyBytes: number;
  };
}
