import { sha256Hex } from '../lib/secrets.ts';
import { phonePrefix } from './phone.ts';

// Pure extraction of the linking signals an account carries from its signup (or import) context.
// Each becomes a row in the inverted index (kind + value -> accounts); values that identify a
// person directly (e-mail, user agent) are stored hashed.

export interface SignupContext {
  emailCanonicalHash: string;
  emailDomain: string;
  emailPattern: string | null;
  /** Public mailbox providers are shared by millions: the domain says nothing as a link. */
  publicProvider: boolean;
  disposable: boolean;
  ip: string | null;
  subnet: string | null;
  asn: number | null;
  hosting: boolean;
  fingerprint: string | null;
  tlsFingerprint: string | null;
  userAgent: string | null;
  phone: string | null;
}

export interface SignalValue {
  kind: string;
  value: string;
}

export function signupSignals(c: SignupContext): SignalValue[] {
  const out: SignalValue[] = [{ kind: 'email', value: c.emailCanonicalHash }];
  if (c.emailPattern) out.push({ kind: 'email_pattern', value: c.emailPattern });
  if (!c.publicProvider) out.push({ kind: 'email_domain', value: c.emailDomain });
  if (c.disposable) out.push({ kind: 'disposable', value: c.emailDomain });
  if (c.ip) out.push({ kind: 'ip', value: c.ip });
  if (c.subnet) out.push({ kind: 'subnet', value: c.subnet });
  if (c.asn !== null) out.push({ kind: c.hosting ? 'hosting_asn' : 'asn', value: String(c.asn) });
  if (c.fingerprint) out.push({ kind: 'fingerprint', value: c.fingerprint });
  if (c.tlsFingerprint) out.push({ kind: 'tls_fingerprint', value: c.tlsFingerprint });
  if (c.userAgent) out.push({ kind: 'user_agent', value: sha256Hex(c.userAgent).slice(0, 32) });
  if (c.phone) {
    out.push({ kind: 'phone', value: c.phone });
    // Numbers bought in bulk are often consecutive: the prefix without the last two digits links them.
    if (/^\+\d{8,15}$/.test(c.phone)) out.push({ kind: 'phone_prefix', value: phonePrefix(c.phone, 2) });
  }
  return out;
}
