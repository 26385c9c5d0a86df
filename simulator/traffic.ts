import { DAY_MS, type PlannedEvent, type PromptPlan, type SimAccount, type Source } from './model.ts';
import type { Rng } from './rng.ts';

// Turns an account's usage plan into the calls of one day. Each planned event is one gateway log
// line for up to a minute of calls (`cost` of them): a day of a farm hugging a 1,000-call quota is
// two dozen lines, not a thousand, which keeps a 30-day run of 5,000 users in minutes while the
// totals, the minutes of activity and the prompts stay those of the calls themselves.

export const BROWSERS = [
  {
    ua: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
    tls: 't13d1516h2_8daaf6152771_02713d6af862',
  },
  {
    ua: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15',
    tls: 't13d2014h2_a09f3c656075_14788d8d241b',
  },
  {
    ua: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0',
    tls: 't13d1715h2_5b57614c22b0_3d5424432f57',
  },
  {
    ua: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0',
    tls: 't13d1516h2_8daaf6152771_02713d6af862',
  },
  {
    ua: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36',
    tls: 't13d1516h2_8daaf6152771_02713d6af862',
  },
] as const;

export const MOBILE_BROWSERS = [
  {
    ua: 'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1',
    tls: 't13d2014h2_a09f3c656075_14788d8d241b',
  },
  {
    ua: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36',
    tls: 't13d1516h2_8daaf6152771_02713d6af862',
  },
  {
    ua: 'Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.6723.107 Mobile Safari/537.36',
    tls: 't13d1516h2_8daaf6152771_02713d6af862',
  },
] as const;

/** The clients developers call an API from. */
export const SCRIPT_CLIENTS = [
  { ua: 'python-requests/2.32.3', tls: 't13d1812h1_85036bcba153_b26ce05bbdd6' },
  { ua: 'OpenAI/Python 1.54.4', tls: 't13d1812h1_85036bcba153_b26ce05bbdd6' },
  { ua: 'node', tls: 't13d1712h1_5b234860e130_6fb6c5a0d4f5' },
  { ua: 'curl/8.5.0', tls: 't13d3112h2_e8f1e7e78f70_6bebaf5329ac' },
  { ua: 'Go-http-client/2.0', tls: 't13d1311h2_f57a46bbacb6_ab7e3b40a677' },
] as const;

const TOPICS: Record<string, string[]> = {
  code: 'python typescript regex dataframe pandas async await closure recursion docker kubernetes postgres index query join migration unit test mock refactor lambda iterator generator compiler linker segfault pointer borrow checker lifetime trait interface generic'.split(
    ' ',
  ),
  cooking:
    'sourdough starter hydration proof crumb braise saute umami miso ferment brine roast garlic shallot risotto stock reduction emulsion vinaigrette pastry lamination croissant ganache tempering caramel'.split(
      ' ',
    ),
  travel:
    'itinerary lisbon kyoto rail pass layover visa hostel ferry hike trail altitude jetlag budget currency tipping museum neighbourhood tram airport lounge luggage'.split(
      ' ',
    ),
  money:
    'budget mortgage refinance index fund bond yield inflation pension tax return deduction invoice spreadsheet cashflow margin forecast dividend savings rate'.split(
      ' ',
    ),
  biology:
    'mitochondria enzyme protein folding gene expression crispr plasmid pcr primer western blot antibody cell culture microscope assay enzyme kinetics'.split(
      ' ',
    ),
  writing:
    'essay outline thesis paragraph transition citation abstract cover letter résumé tone concise draft edit poem haiku sonnet metaphor narrative'.split(
      ' ',
    ),
  music:
    'chord progression scale modal jazz voicing tempo metronome guitar fingerstyle piano pedal harmony melody bassline mixing reverb compressor'.split(
      ' ',
    ),
  garden:
    'tomato blight compost mulch pruning seedling germination perennial soil ph aphid watering raised bed fertiliser hedge lawn'.split(
      ' ',
    ),
  law: 'tenancy deposit contract clause liability warranty gdpr consent notice period appeal small claims landlord employment'.split(
    ' ',
  ),
  fitness:
    'marathon interval tempo run deadlift squat mobility stretch protein recovery sleep heart rate zone cadence'.split(
      ' ',
    ),
};

const OPENERS = [
  'How do I',
  'Can you explain',
  'What is the difference between',
  'Help me understand',
  'Write a short',
  'Why does',
  'Give me an example of',
  'Is it true that',
  'Fix this:',
  'Summarise',
  'Compare',
  'What would you suggest for',
  'Quick question about',
  'Draft an email about',
  'List pros and cons of',
  'ELI5',
];

export function topicNames(): string[] {
  return Object.keys(TOPICS);
}

/** A person's vocabulary: the words of their topics, so their questions vary but stay theirs. */
export function vocabularyFor(rng: Rng): string[] {
  const topics = rng.sample(Object.keys(TOPICS), rng.int(1, 3));
  return topics.flatMap((t) => TOPICS[t] ?? []);
}

export function openersFor(rng: Rng): number[] {
  return rng.sample(
    OPENERS.map((_, i) => i),
    rng.int(3, 8),
  );
}

/** Prompt templates of a model-extraction farm: the same scaffolding around small fills. */
const FARM_TEMPLATES = [
  'You are an expert assistant. Answer the following question step by step and give the final answer on the last line: {q}',
  'Translate the following English sentence into German, French and Spanish, one per line: {q}',
  'Rewrite the text below in a formal tone, then list three alternative phrasings: {q}',
  'Classify the sentiment of this product review as positive, negative or neutral and explain in one sentence: {q}',
  'Generate five diverse question and answer pairs suitable for training a model about: {q}',
  'Return a JSON object with keys "summary", "keywords" and "category" for this text: {q}',
];

const FILLS = [
  'the causes of the french revolution',
  'how photosynthesis converts light into chemical energy',
  'the shipping was fast but the battery died after two days',
  'please find attached the invoice for march',
  'the meeting has been moved to thursday afternoon',
  'explain the time complexity of quicksort',
  'the best way to learn a new language as an adult',
  'our quarterly revenue grew by twelve percent',
  'what is the capital of australia and why was it chosen',
  'the hotel room was clean and the staff were friendly',
  'how vaccines train the immune system',
  'the train was delayed by forty minutes again',
  'write a limerick about a cat who codes',
  'the difference between weather and climate',
  'why the sky appears blue during the day',
  'the new phone has a great camera but a weak speaker',
];

export function templatesFor(rng: Rng, count: number): number[] {
  return rng.sample(
    FARM_TEMPLATES.map((_, i) => i),
    count,
  );
}

export function promptText(rng: Rng, plan: PromptPlan): string {
  if (plan.kind === 'template') {
    const template = FARM_TEMPLATES[rng.pick(plan.templates)] ?? FARM_TEMPLATES[0]!;
    const fill = FILLS[rng.int(0, Math.min(plan.fills, FILLS.length) - 1)] ?? FILLS[0]!;
    return template.replace('{q}', rng.chance(0.3) ? `${fill} (${rng.int(1, 9)})` : fill);
  }
  const opener = OPENERS[rng.pick(plan.openers)] ?? OPENERS[0]!;
  const words = Array.from({ length: rng.int(3, 12) }, () => rng.pick(plan.vocabulary));
  const tail = rng.chance(0.4)
    ? ` ${rng.pick(['?', 'thanks', 'please', 'in 3 sentences', 'with code'])}`
    : '?';
  return `${opener} ${words.join(' ')}${tail}`;
}

/** Local-time weights of when people are awake and working: idle nights, busy mornings and evenings. */
const PERSON_HOURS = [
  0.2, 0.1, 0.05, 0.03, 0.03, 0.05, 0.3, 0.8, 1.4, 2.0, 2.2, 2.1, 1.6, 1.8, 2.0, 2.0, 1.8, 1.4, 1.1, 1.2, 1.4,
  1.3, 0.9, 0.5,
];

/** Day 0 is a Monday: days 5 and 6 of each week are the weekend. */
export const isWeekend = (day: number): boolean => day % 7 >= 5;

function pickSource(rng: Rng, sources: readonly Source[]): Source {
  return sources[rng.weightedIndex(sources.map((s) => s.weight))] ?? (sources[0] as Source);
}

function eventFrom(rng: Rng, source: Source, at: number, cost: number, query: string, endpoint: string) {
  const event: PlannedEvent = {
    at,
    ip: rng.pick(source.ips),
    userAgent: rng.pick(source.userAgents),
    endpoint,
    cost,
    query,
  };
  if (source.fingerprints.length > 0) event.fingerprint = rng.pick(source.fingerprints);
  if (source.tlsFingerprint) event.tlsFingerprint = source.tlsFingerprint;
  return event;
}

/** Minutes of the day (UTC) at which this day's calls happen, each with its share of the calls. */
function minutesOfDay(rng: Rng, account: SimAccount, calls: number): Array<[number, number]> {
  const { timing, perMinute } = account.usage;
  const out: Array<[number, number]> = [];
  let left = calls;
  const take = () => {
    const n = Math.min(left, rng.int(perMinute[0], perMinute[1]));
    left -= n;
    return n;
  };
  if (timing.kind === 'slots') {
    for (const slot of timing.slots) {
      if (left <= 0) break;
      if (rng.chance(timing.skip)) continue;
      out.push([slot * 60 + rng.int(0, timing.jitterSeconds), take()]);
    }
  } else if (timing.kind === 'cron') {
    for (let m = timing.startMinute; m < 1440 && left > 0; m += timing.everyMinutes) {
      out.push([m * 60 + rng.int(1, 9), take()]);
    }
  } else {
    const sessions = rng.int(timing.sessions[0], timing.sessions[1]);
    for (let s = 0; s < sessions && left > 0; s++) {
      const localHour = rng.weightedIndex(PERSON_HOURS);
      let minute = ((localHour - timing.tzOffsetHours) * 60 + rng.int(0, 59) + 1440 * 2) % 1440;
      // The last session takes what is left, so heavy users keep to their plan.
      const share = s === sessions - 1 ? left : Math.ceil(left / (sessions - s));
      let sessionLeft = share;
      while (sessionLeft > 0 && left > 0) {
        const n = Math.min(sessionLeft, take());
        if (n <= 0) break;
        sessionLeft -= n;
        out.push([minute * 60 + rng.int(0, 59), n]);
        minute = (minute + rng.int(1, 4)) % 1440;
      }
    }
  }
  return out;
}

/** The calls an account plans on a simulated day, in time order (ms from the start of day 0). */
export function dayEvents(root: Rng, account: SimAccount, day: number): PlannedEvent[] {
  const startOfDay = day * DAY_MS;
  if (account.signupAt >= startOfDay + DAY_MS) return [];
  const rng = root.fork('usage', account.externalId, day);
  const plan = account.usage;
  if (!rng.chance(isWeekend(day) ? plan.weekendActive : plan.weekdayActive)) return [];
  const calls = rng.int(plan.dailyCalls[0], plan.dailyCalls[1]);
  if (calls <= 0) return [];
  const travelling = plan.travelDays?.includes(day) && plan.travelSource;
  const sessionSource = () => (travelling ? (plan.travelSource as Source) : pickSource(rng, plan.sources));
  const perSession = plan.timing.kind === 'sessions';
  let source = sessionSource();
  const events: PlannedEvent[] = [];
  let lastSecond = -1;
  for (const [second, cost] of minutesOfDay(rng, account, calls).sort((a, b) => a[0] - b[0])) {
    const at = startOfDay + second * 1000 + rng.int(0, 999);
    // A person's account is used only once it exists; the first minute goes to signing up.
    if (at < account.signupAt + 60_000) continue;
    if (!perSession || second - lastSecond > 15 * 60) source = sessionSource();
    lastSecond = second;
    const query = promptText(rng, plan.prompts);
    events.push(eventFrom(rng, source, at, cost, query, rng.pick(plan.endpoints)));
  }
  return events.sort((a, b) => a.at - b.at);
}
