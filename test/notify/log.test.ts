import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogNotifier } from '../../src/notify/log.ts';
import { maskRecipient } from '../../src/notify/notifier.ts';
import type { NotificationMessage } from '../../src/queues/definitions.ts';

const message = (overrides: Partial<NotificationMessage> = {}): NotificationMessage => ({
  type: 'verify_email',
  to: 'alice@example.com',
  accountId: 'acc_01hx2k3m4n5p6q7r8s9t0v',
  secret: 'vt_Zm9vYmFyYmF6cXV4',
  expiresAt: '2031-05-04T10:20:30.000Z',
  ...overrides,
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('log notifier', () => {
  it('writes one line to stdout with the masked address and the token', async () => {
    const writes: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    await createLogNotifier().send(message());
    vi.restoreAllMocks();

    expect(writes).toHaveLength(1);
    const line = writes[0]!;
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toContain('\n');
    expect(line).toBe(
      '[gatehouse notify] verify_email to a***@example.com account acc_01hx2k3m4n5p6q7r8s9t0v ' +
        'token vt_Zm9vYmFyYmF6cXV4 (expires 2031-05-04T10:20:30.000Z)\n',
    );
    expect(line).not.toContain('alice@');
  });

  it('labels an SMS code and masks the phone number', async () => {
    const lines: string[] = [];
    await createLogNotifier({ write: (l) => lines.push(l) }).send(
      message({ type: 'verify_phone', to: '+447700900123', secret: '482913' }),
    );
    expect(lines).toEqual([
      '[gatehouse notify] verify_phone to +44***23 account acc_01hx2k3m4n5p6q7r8s9t0v code 482913 (expires 2031-05-04T10:20:30.000Z)\n',
    ]);
  });

  it('stays one line whatever the fields contain', async () => {
    const lines: string[] = [];
    await createLogNotifier({ write: (l) => lines.push(l) }).send(
      message({ accountId: 'acc_x\n[gatehouse notify] verify_email to forged', to: 'x@example.com\r\n' }),
    );
    expect(lines).toHaveLength(1);
    expect(lines[0]!.slice(0, -1)).not.toMatch(/[\r\n]/);
  });
});

describe('maskRecipient', () => {
  it('keeps only enough of an address to tell messages apart', () => {
    expect(maskRecipient('alice@example.com')).toBe('a***@example.com');
    expect(maskRecipient('+447700900123')).toBe('+44***23');
    expect(maskRecipient('12345')).toBe('***');
    expect(maskRecipient('')).toBe('***');
  });
});
