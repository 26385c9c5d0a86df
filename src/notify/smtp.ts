import { UnrecoverableError } from 'bullmq';
import { createTransport } from 'nodemailer';
import { redactUrl } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { NotificationMessage } from '../queues/definitions.ts';
import { isEmailAddress, maskRecipient, type Notifier } from './notifier.ts';

// E-mail verification through the operator's mail server. SMS codes need the webhook notifier,
// which hands them to the operator's SMS provider; the only phone verification that can travel by
// SMTP is one whose `to` is an e-mail address (a carrier's e-mail-to-SMS gateway).

export interface SmtpNotifierOptions {
  /** smtp:// (STARTTLS when offered) or smtps:// (TLS from the start), credentials in the URL. */
  url: string;
  from: string;
  timeoutMs: number;
  logger?: Logger;
}

interface Mail {
  subject: string;
  text: string;
  html: string;
}

export function createSmtpNotifier(opts: SmtpNotifierOptions): Notifier {
  const where = redactUrl(opts.url);
  // No pool: verification mail is low volume, and a connection per message leaves no idle socket
  // for the mail server to drop between messages.
  const transport = createTransport({
    url: opts.url,
    connectionTimeout: opts.timeoutMs,
    greetingTimeout: opts.timeoutMs,
    socketTimeout: opts.timeoutMs,
    dnsTimeout: opts.timeoutMs,
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  let closed = false;

  return {
    kind: 'smtp',
    async send(msg) {
      if (!isEmailAddress(msg.to)) {
        throw new UnrecoverableError(
          msg.type === 'verify_phone'
            ? 'SMS delivery needs the webhook notifier'
            : 'verify_email needs an e-mail address',
        );
      }
      if (closed) throw new Error('SMTP notifier is closed');
      const mail = compose(msg);
      const started = Date.now();
      try {
        const info = await transport.sendMail({
          from: opts.from,
          to: msg.to,
          subject: mail.subject,
          text: mail.text,
          html: mail.html,
          // Out-of-office and similar robots must not answer a machine-sent message.
          headers: { 'Auto-Submitted': 'auto-generated' },
          // The per-step timeouts each restart on progress; this bounds the whole conversation.
          signal: AbortSignal.timeout(opts.timeoutMs * 3),
        });
        opts.logger?.debug(
          {
            type: msg.type,
            to: maskRecipient(msg.to),
            accountId: msg.accountId,
            messageId: info.messageId,
            ms: Date.now() - started,
          },
          'verification message handed to SMTP server',
        );
      } catch (err) {
        // Only codes: the server's reply text can quote the recipient, and nodemailer's messages
        // can quote the connection URL.
        const e = err as {
          code?: unknown;
          originalCode?: unknown;
          responseCode?: unknown;
          permanent?: unknown;
        };
        const reason = [e.code, e.originalCode, e.responseCode]
          .filter((part) => typeof part === 'string' || typeof part === 'number')
          .join(' ');
        const message = `SMTP ${where} did not take the message (${reason || 'unknown error'})`;
        // A 5xx reply (other than 503) is the server's final answer for this message.
        if (e.permanent === true) throw new UnrecoverableError(message);
        throw new Error(message);
      }
    },
    async close() {
      closed = true;
      transport.close();
    },
  };
}

function compose(msg: NotificationMessage): Mail {
  const expires = describeExpiry(msg.expiresAt);
  if (msg.type === 'verify_phone') {
    // Kept short: an e-mail-to-SMS gateway turns it into one text message.
    return {
      subject: 'Your verification code',
      text: `Your verification code is ${msg.secret}${expires ? ` (valid until ${expires})` : ''}.\n`,
      html: `<p>Your verification code is <strong>${escapeHtml(msg.secret)}</strong>${
        expires ? ` (valid until ${escapeHtml(expires)})` : ''
      }.</p>\n`,
    };
  }
  const lines = [
    'Please confirm your e-mail address with this verification token:',
    '',
    msg.secret,
    '',
    ...(expires ? [`It is valid until ${expires}.`] : []),
    'If you did not sign up, you can ignore this message.',
  ];
  return {
    subject: 'Confirm your e-mail address',
    text: `${lines.join('\n')}\n`,
    html: [
      '<p>Please confirm your e-mail address with this verification token:</p>',
      `<p><code style="font-size:1.2em">${escapeHtml(msg.secret)}</code></p>`,
      ...(expires ? [`<p>It is valid until ${escapeHtml(expires)}.</p>`] : []),
      '<p>If you did not sign up, you can ignore this message.</p>',
      '',
    ].join('\n'),
  };
}

function describeExpiry(expiresAt: string): string | undefined {
  const ms = Date.parse(expiresAt);
  if (Number.isNaN(ms)) return undefined;
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
