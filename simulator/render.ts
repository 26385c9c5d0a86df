import { type FarmReport, pct, type Report } from './report.ts';

// The report as a terminal table and as one self-contained HTML page (inline SVG, no assets).

const seconds = (ms: number) =>
  ms >= 60_000
    ? `${Math.floor(ms / 60_000)}m ${Math.round((ms % 60_000) / 1000)}s`
    : `${(ms / 1000).toFixed(1)}s`;
const fixed = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const reasons = (m: Record<string, number>) =>
  Object.entries(m)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(', ') || '-';

/** Rows of the farm table: a label and a cell per farm. */
export function farmRows(farms: FarmReport[]): Array<[string, string[]]> {
  const of = (n: number, f: FarmReport) => `${n} (${pct(n / Math.max(1, f.attempted), 0)})`;
  return [
    ['attempted', farms.map((f) => String(f.attempted))],
    ['blocked at signup', farms.map((f) => of(f.blockedAtSignup, f))],
    ['created', farms.map((f) => String(f.created))],
    ['challenged at signup', farms.map((f) => String(f.challengedAtSignup))],
    ['never activated', farms.map((f) => String(f.neverActivated))],
    ['throttled', farms.map((f) => String(f.throttled))],
    ['challenged', farms.map((f) => String(f.challenged))],
    ['suspended', farms.map((f) => String(f.suspended))],
    ['stopped at the end', farms.map((f) => of(f.stopped, f))],
    [
      'caught on day (median/max)',
      farms.map((f) => `${f.caughtDay.median ?? '-'} / ${f.caughtDay.max ?? '-'}`),
    ],
    ['never caught', farms.map((f) => String(f.caughtDay.never))],
    [
      'multiplication (peak/mean)',
      farms.map((f) => `${fixed(f.multiplication.peak)} / ${fixed(f.multiplication.mean)}`),
    ],
    ['unchecked demand (peak)', farms.map((f) => fixed(f.multiplication.plannedPeak))],
    ['calls served / planned', farms.map((f) => `${f.queries.served} / ${f.queries.planned}`)],
    ['live calls served / made', farms.map((f) => `${f.live.served} / ${f.live.calls}`)],
  ];
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

export function renderText(r: Report): string {
  const farms = r.scenario === 'mixed' ? [...r.farms, r.farmTotal] : r.farms;
  const l = r.legit;
  const out: string[] = [];
  out.push(
    `Gatehouse red-team report: ${r.scenario}, seed ${r.seed}, ${r.days} days, ${r.legitUsers} legitimate users, ${r.farmAccounts} farm accounts`,
  );
  out.push(
    `Gatehouse ${r.gatehouse}; day 1 = ${r.dayZero.slice(0, 10)} (UTC); one account's quota ${r.quota.user ?? r.quota.assumed} calls a day (${r.quota.source})`,
  );
  out.push('');
  out.push(
    table(
      ['farm', ...farms.map((f) => f.scenario)],
      farmRows(farms).map(([label, cells]) => [label, ...cells]),
    ),
  );
  for (const f of farms)
    if (f.blockedAtSignup > 0) out.push(`  ${f.scenario} signup refusals: ${reasons(f.blockedReasons)}`);
  out.push('');
  out.push(`legitimate users: ${l.users} (${l.created} in Gatehouse, ${l.liveSignups} signed up live)`);
  out.push(
    table(
      ['', 'count', 'rate'],
      [
        ['blocked at signup', String(l.blockedAtSignup), `${pct(l.blockedAtSignupRate, 2)} of live signups`],
        [
          'challenged at signup',
          String(l.challengedAtSignup),
          `${pct(l.challengedAtSignupRate, 2)} of live signups`,
        ],
        ['never activated', String(l.neverActivated), ''],
        ['challenged by detection', String(l.challenged), pct(l.challengedRate, 2)],
        ['throttled', String(l.throttled), pct(l.throttledRate, 2)],
        ['suspended', String(l.suspended), pct(l.suspendedRate, 2)],
        ['second signup refused', `${l.secondSignupRefused} / ${l.signedUpTwice}`, 'expected: same mailbox'],
        ['step-ups verified', `${l.stepUps.verified} / ${l.stepUps.attempted}`, ''],
        ['live calls served', `${l.live.served} / ${l.live.calls}`, reasons(l.live.decisions)],
      ],
    ),
  );
  if (l.blockedAtSignup > 0) out.push(`  legitimate signup refusals: ${reasons(l.blockedReasons)}`);
  const hit = Object.entries(l.byPersona).filter(([, p]) => p.challenged + p.throttled + p.suspended > 0);
  if (hit.length > 0)
    out.push(
      `  by persona: ${hit.map(([k, p]) => `${k} (${p.users}): challenged ${p.challenged}, throttled ${p.throttled}, suspended ${p.suspended}`).join('; ')}`,
    );
  out.push('');
  out.push(
    table(
      [
        'day',
        'farm stopped',
        'farm ×quota served / wanted',
        'legit affected',
        'legit suspended',
        'run',
        'log lines',
      ],
      r.perDay.map((d) => [
        d.live ? `${d.day} live` : String(d.day),
        `${d.farmStopped} / ${d.farmAttempted}`,
        `${fixed(d.multiplication)} / ${fixed(d.unchecked)}`,
        String(d.legitAffected),
        String(d.legitSuspended),
        d.runMs === null ? d.run : `${d.run} ${seconds(d.runMs)}`,
        String(d.logLines),
      ]),
    ),
  );
  out.push('');
  out.push(
    r.thresholds.failures.length === 0
      ? 'thresholds: met'
      : `thresholds NOT met:\n  ${r.thresholds.failures.join('\n  ')}`,
  );
  for (const n of r.notes) out.push(`note: ${n}`);
  for (const g of r.gaps)
    out.push(
      `api gap: ${g.endpoint} → ${g.status}${g.code ? ` ${g.code}` : ''} ×${g.count}: ${g.note}\n  request:  ${g.request}\n  response: ${g.response}`,
    );
  const t = r.timings;
  out.push(
    `wall time ${seconds(t.wallMs)} (start ${seconds(t.startMs)}, live ${seconds(t.liveMs)}, history ${seconds(t.historyMs)}, probe ${seconds(t.probeMs)})`,
  );
  return out.join('\n');
}

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A line chart of shares per day (0–100 %), one polyline per series. */
function lineChart(
  title: string,
  days: number,
  series: Array<{ name: string; color: string; values: number[] }>,
): string {
  const w = 720;
  const h = 260;
  const left = 48;
  const bottom = 30;
  const plotW = w - left - 20;
  const plotH = h - bottom - 30;
  const x = (d: number) => left + (days <= 1 ? plotW / 2 : (d * plotW) / (days - 1));
  const y = (v: number) => 30 + plotH - Math.min(1, Math.max(0, v)) * plotH;
  const grid = [0, 0.25, 0.5, 0.75, 1]
    .map(
      (v) =>
        `<line x1="${left}" x2="${left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" font-size="11">${v * 100}%</text>`,
    )
    .join('');
  const ticks = Array.from({ length: days }, (_, d) => d)
    .filter((d) => days <= 15 || d % 5 === 0 || d === days - 1)
    .map((d) => `<text x="${x(d)}" y="${h - 10}" text-anchor="middle" font-size="11">${d + 1}</text>`)
    .join('');
  const lines = series
    .map(
      (s) =>
        `<polyline fill="none" stroke="${s.color}" stroke-width="2.5" points="${s.values.map((v, d) => `${x(d).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>`,
    )
    .join('');
  let at = left + 10;
  const legend = series
    .map((s) => {
      const item = `<rect x="${at}" y="8" width="12" height="12" fill="${s.color}"/><text x="${at + 17}" y="18" font-size="12">${esc(s.name)}</text>`;
      at += 30 + s.name.length * 6.2;
      return item;
    })
    .join('');
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img">${grid}${ticks}${lines}${legend}</svg></figure>`;
}

/** Bars of the farm's multiplication factor per day, over the outline of its unchecked demand. */
function barChart(title: string, served: number[], unchecked: number[]): string {
  const w = 720;
  const h = 240;
  const left = 48;
  const plotW = w - left - 20;
  const plotH = h - 70;
  const max = Math.max(1, ...served, ...unchecked);
  const bw = plotW / Math.max(1, served.length);
  const y = (v: number) => 30 + plotH - (v / max) * plotH;
  const bars = served
    .map((v, d) => {
      const x = left + d * bw + 2;
      const width = Math.max(1, bw - 4).toFixed(1);
      const demand = unchecked[d] ?? 0;
      return (
        `<rect x="${x.toFixed(1)}" y="${y(demand).toFixed(1)}" width="${width}" height="${(30 + plotH - y(demand)).toFixed(1)}" fill="none" stroke="#999" stroke-dasharray="4 3"/>` +
        `<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${width}" height="${(30 + plotH - y(v)).toFixed(1)}" fill="#c0392b"><title>day ${d + 1}: ${fixed(v)}× served, ${fixed(demand)}× wanted</title></rect>` +
        (served.length <= 15 || d % 5 === 0
          ? `<text x="${(x + bw / 2 - 2).toFixed(1)}" y="${h - 22}" text-anchor="middle" font-size="11">${d + 1}</text>`
          : '')
      );
    })
    .join('');
  const axis = `<text x="${left - 6}" y="34" text-anchor="end" font-size="11">${fixed(max)}×</text><text x="${left - 6}" y="${30 + plotH}" text-anchor="end" font-size="11">0</text>`;
  const legend = `<rect x="${left + 10}" y="8" width="12" height="12" fill="#c0392b"/><text x="${left + 27}" y="18" font-size="12">served</text><rect x="${left + 100}" y="8" width="12" height="12" fill="none" stroke="#999" stroke-dasharray="4 3"/><text x="${left + 117}" y="18" font-size="12">wanted (no Gatehouse)</text><text x="${left + plotW / 2}" y="${h - 4}" text-anchor="middle" font-size="11">simulated day (the last is today, live)</text>`;
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img">${axis}${bars}${legend}</svg></figure>`;
}

export function renderHtml(r: Report): string {
  const farms = r.scenario === 'mixed' ? [...r.farms, r.farmTotal] : r.farms;
  const days = r.perDay.length;
  const farmShare = r.perDay.map((d) => d.farmStopped / Math.max(1, d.farmAttempted));
  const legitShare = r.perDay.map((d) => d.legitAffected / Math.max(1, r.legit.created));
  const legitSuspended = r.perDay.map((d) => d.legitSuspended / Math.max(1, r.legit.created));
  const rows = farmRows(farms)
    .map(
      ([label, cells]) => `<tr><th>${esc(label)}</th>${cells.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`,
    )
    .join('');
  const l = r.legit;
  const legitRows: Array<[string, string]> = [
    ['users (in Gatehouse / signed up live)', `${l.users} (${l.created} / ${l.liveSignups})`],
    ['blocked at signup', `${l.blockedAtSignup} (${pct(l.blockedAtSignupRate, 2)} of live signups)`],
    ['challenged at signup', `${l.challengedAtSignup} (${pct(l.challengedAtSignupRate, 2)})`],
    ['challenged by detection', `${l.challenged} (${pct(l.challengedRate, 2)})`],
    ['throttled', `${l.throttled} (${pct(l.throttledRate, 2)})`],
    ['suspended', `${l.suspended} (${pct(l.suspendedRate, 2)})`],
    ['live calls served', `${l.live.served} / ${l.live.calls}`],
  ];
  const text = renderText(r);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gatehouse red-team report: ${esc(r.scenario)}</title>
<style>body{font:14px/1.45 system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}th:first-child{text-align:left}figure{margin:1.5rem 0}figcaption{font-weight:600;margin-bottom:.3rem}pre{background:#f6f6f6;padding:1rem;overflow:auto;font-size:12px}.fail{color:#b00}.ok{color:#070}</style></head>
<body><h1>Gatehouse red-team report: ${esc(r.scenario)}</h1>
<p>Seed ${r.seed}, ${r.days} simulated days from ${esc(r.dayZero.slice(0, 10))}, ${r.legitUsers} legitimate users, ${r.farmAccounts} farm accounts. One account's daily quota: ${r.quota.user ?? r.quota.assumed} calls.</p>
<p class="${r.thresholds.failures.length ? 'fail' : 'ok'}">${r.thresholds.failures.length ? `Thresholds not met: ${r.thresholds.failures.map(esc).join('; ')}` : 'Thresholds met.'}</p>
<h2>Farm</h2><table><tr><th></th>${farms.map((f) => `<th>${esc(f.scenario)}</th>`).join('')}</tr>${rows}</table>
<h2>Legitimate users</h2><table>${legitRows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>
${lineChart('Farm accounts stopped vs legitimate accounts affected, by simulated day', days, [
  { name: 'farm stopped (of those tried so far)', color: '#c0392b', values: farmShare },
  { name: 'legit throttled, challenged or suspended', color: '#2471a3', values: legitShare },
  { name: 'legit suspended', color: '#17202a', values: legitSuspended },
])}
${barChart(
  "Farm calls served per day ÷ one account's daily quota (multiplication factor)",
  r.perDay.map((d) => d.multiplication),
  r.perDay.map((d) => d.unchecked),
)}
<h2>Full report</h2><pre>${esc(text)}</pre>
</body></html>
`;
}
