import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { NotificationMessage } from '../queues/definitions.ts';
import { createLogNotifier } from './log.ts';
import { createSmtpNotifier } from './smtp.ts';
import { createWebhookNotifier } from './webhook.ts';

export interface SendOptions {
  /**
   * Identifies one notification across its delivery attempts, so a receiver that already handled
   * an attempt Gatehouse saw fail (a timeout after the receiver acted) can drop the repeat.
   */
  deliveryId?: string;
}

/**
 * Delivers verification messages. send() throws when the message did not leave: a plain Error
 * means "try again later", BullMQ's UnrecoverableError means retrying cannot help.
 */
export interface Notifier {
  kind: 'log' | 'webhook' | 'smtp';
  send(msg: NotificationMessage, opts?: SendOptions): Promise<void>;
  close?(): Promise<void>;
}

export function createNotifier(config: Config, logger: Logger): Notifier {
  switch (config.NOTIFIER) {
    case 'webhook': {
      // loadConfig already refuses NOTIFIER=webhook without these; a hand-built Config might not.
      if (!config.NOTIFY_WEBHOOK_URL || !config.NOTIFY_WEBHOOK_SECRET) {
        throw new Error('NOTIFIER=webhook needs NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET');
      }
      return createWebhookNotifier({
        url: config.NOTIFY_WEBHOOK_URL,
        secret: config.NOTIFY_WEBHOOK_SECRET,
        timeoutMs: config.NOTIFY_TIMEOUT_MS,
        logger,
      });
    }
    case 'smtp': {
      if (!config.SMTP_URL) throw new Error('NOTIFIER=smtp needs SMTP_URL');
      return createSmtpNotifier({
        url: config.SMTP_URL,
        from: config.SMTP_FROM,
        timeoutMs: config.NOTIFY_TIMEOUT_MS,
        logger,
      });
    }
    case 'log': {
      logger.warn('NOTIFIER=log prints verification tokens and codes to stdout; use it in development only');
      return createLogNotifier();
    }
  }
}

/**
 * A recipient shown in logs: enough to tell messages apart, too little to harvest addresses or
 * phone numbers from log storage.
 */
export function maskRecipient(to: string): string {
  const at = to.lastIndexOf('@');
  if (at > 0) return `${to[0]}***${to.slice(at)}`;
  const digits = to.replace(/[^0-9]/g, '');
  if (digits.length >= 7)
    return `${to.startsWith('+') ? '+' : ''}${digits.slice(0, 2)}***${digits.slice(-2)}`;
  return '***';
}

/** An e-mail address rather than a phone number: decides which channels can carry the message. */
export const isEmailAddress = (to: string): boolean => /^[^@\s]+@[^@\s]+$/.test(to);
