import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

// Gatehouse as its own process, started the way an operator starts it: a benchmark that ran the app
// in its own event loop would measure the load generator's contention as the server's latency.

export interface GatehouseProcess {
  /** The tsx launcher's pid; the Gatehouse node process is its child. */
  readonly pid: number;
  /** The base URL once it printed "ready at", rejected if it exits, times out or is aborted first. */
  readonly ready: Promise<string>;
  /** SIGTERM (a graceful drain), then SIGKILL for the whole process group if it overstays. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  /** The repository root: where src/main.ts and node_modules/.bin/tsx are. */
  root: string;
  env: NodeJS.ProcessEnv;
  mode?: 'api' | 'all';
  readyTimeoutMs?: number;
  signal?: AbortSignal;
  /** Every line the process writes other than the ready line. */
  onOutput?: (line: string, stream: 'stdout' | 'stderr') => void;
}

const READY = /ready at (http:\/\/\S+)/;

export function startGatehouseProcess(opts: StartOptions): GatehouseProcess {
  const child: ChildProcess = spawn(
    join(opts.root, 'node_modules', '.bin', 'tsx'),
    ['src/main.ts', opts.mode ?? 'api'],
    {
      cwd: opts.root,
      env: opts.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: a terminal's Ctrl-C reaches only the benchmark, which then drains the
      // server in order, and a last-resort SIGKILL can reach tsx's node child as well.
      detached: true,
    },
  );
  const pid = child.pid;
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });

  const stderrTail: string[] = [];
  const ready = new Promise<string>((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const timeoutMs = opts.readyTimeoutMs ?? 60_000;
    const timer = setTimeout(
      () => settle(() => reject(new Error(`Gatehouse was not ready within ${timeoutMs / 1000} s`))),
      timeoutMs,
    );
    const onAbort = () => settle(() => reject(opts.signal?.reason ?? new Error('aborted')));
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });

    child.once('error', (err) => settle(() => reject(err)));
    child.once('exit', (code, signal) =>
      settle(() =>
        reject(
          new Error(
            `Gatehouse exited (${signal ?? `code ${code}`}) before it was ready` +
              (stderrTail.length > 0 ? `:\n${stderrTail.join('\n')}` : ''),
          ),
        ),
      ),
    );
    if (child.stdout) {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const url = READY.exec(line)?.[1];
        if (url !== undefined && !settled) settle(() => resolve(url));
        else opts.onOutput?.(line, 'stdout');
      });
    }
    if (child.stderr) {
      createInterface({ input: child.stderr }).on('line', (line) => {
        stderrTail.push(line);
        if (stderrTail.length > 20) stderrTail.shift();
        opts.onOutput?.(line, 'stderr');
      });
    }
  });
  // Callers may stop() without ever awaiting ready; an unobserved rejection would crash the process.
  ready.catch(() => {});

  const groupAlive = (): boolean => {
    if (pid === undefined) return false;
    try {
      process.kill(-pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const waitFor = (ms: number) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      void exited.then(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });

  return {
    pid: pid ?? -1,
    ready,
    async stop(graceMs = 15_000) {
      if (pid === undefined) return;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        if (!(await waitFor(graceMs))) {
          process.stderr.write(`Gatehouse did not stop within ${graceMs / 1000} s of SIGTERM; killing it\n`);
          if (groupAlive()) process.kill(-pid, 'SIGKILL');
          await waitFor(5_000);
        }
      }
      // tsx forwards SIGTERM and exits with its child, but should the child outlive it, nothing else
      // would ever stop it.
      if (groupAlive()) process.kill(-pid, 'SIGKILL');
    },
  };
}
