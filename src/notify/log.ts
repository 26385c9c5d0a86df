import { maskRecipient, type Notifier } from './notifier.ts';

// Development only: the token or code is printed to stdout so a developer can finish a signup
// without a mail server or SMS provider. It writes past pino on purpose: structured logs are
// shipped and kept, and must never contain a verification secret.

export interface LogNotifierOptions {
  /** Where the line goes; process.stdout unless a test captures it. */
  write?: (line: string) => void;
}

export function createLogNotifier(opts: LogNotifierOptions = {}): Notifier {
  const write = opts.write ?? ((line: string) => void process.stdout.write(line));
  return {
    kind: 'log',
    async send(msg) {
      const label = msg.type === 'verify_phone' ? 'code' : 'token';
      const line =
        `[gatehouse notify] ${msg.type} to ${maskRecipient(msg.to)} account ${msg.accountId} ` +
        `${label} ${msg.secret} (expires ${msg.expiresAt})`;
      // Control characters in a field could forge a second line that looks like another message.
      write(`${line.replace(/[\p{Cc}\p{Zl}\p{Zp}]/gu, '?')}\n`);
    },
  };
}
