import type { ChatProvider, RespondRequest } from './providers/types.js';
import { TIERS, type Tier } from './contract.js';
import { formatDuration, type Workspace, type WorkspaceSnapshot } from './workspace.js';

/**
 * The answerer used when no model is configured. It knows the workspace facts, so the seed walkthrough
 * ("What region are you running in?") works without any API key, and it tells people how to get a real model
 * instead of pretending to be one.
 */

export const NO_MODEL_HINT =
  'No language model is configured for this workspace, so I can only answer questions about the workspace itself ' +
  '(its id, name, role, region, tier, runtime and uptime). To get full answers, set OPENAI_API_KEY (plus ' +
  'OPENAI_BASE_URL and MODEL for another OpenAI-compatible endpoint or model) or ANTHROPIC_API_KEY as workspace ' +
  'secrets, then restart the workspace.';

type Topic = 'name' | 'id' | 'role' | 'region' | 'tier' | 'runtime' | 'uptime';

/** Order here is the order of sentences in a combined answer ("what is your name and region?"). */
const TOPICS: Array<[Topic, RegExp]> = [
  ['name', /\byour name\b|\b(?:you|u) (?:called|named)\b|\bname of (?:this|the) (?:workspace|agent)\b/i],
  ['id', /\b(?:workspace[ _-]?)?ids?\b|\bidentifier\b/i],
  ['role', /\broles?\b|\bpurpose\b|\byour job\b/i],
  ['region', /\bregions?\b|\bwhere are (?:you|u)\b|\bwhere\b.*\b(?:you|u)\b.*\b(?:run|running|hosted|located|live|deployed|based)\b|\bdata ?cent(?:er|re)\b/i],
  ['tier', /\btiers?\b|\bmemory\b|\bram\b|\bcpus?\b|\bresources\b|\bmachine size\b/i],
  ['runtime', /\bruntimes?\b/i],
  ['uptime', /\buptime\b|\bhow long\b|\bsince when\b|\bwhen did you start\b/i],
];

const INTRO = /\bwho are (?:you|u)\b|\bwhat are you\b|\bwhat can you do\b|\babout yourself\b|\bintroduce\b|\bhelp\b|\bcapabilit|^\s*(?:hi|hello|hey|yo|hallo|good (?:morning|afternoon|evening))\b/i;

/** A request for facts that names none: the responder asks which one (a question, so a task turn is input-required). */
const FACT_REQUEST = /\bfacts?\b/i;
export const WHICH_FACT_QUESTION = 'Which fact would you like to know: my name, id, role, region, tier, runtime or uptime?';

export function detectTopics(text: string): Topic[] {
  return TOPICS.filter(([, re]) => re.test(text)).map(([topic]) => topic);
}

function sentence(topic: Topic, s: WorkspaceSnapshot): string {
  switch (topic) {
    case 'name':
      return `My name is ${s.name}.`;
    case 'id':
      return `My workspace id is ${s.id}.`;
    case 'role':
      return s.role ? `My role is: ${s.role}` + (/[.!?]$/.test(s.role) ? '' : '.') : 'No role has been set for this workspace.';
    case 'region':
      return `I'm running in region ${s.region}.`;
    case 'tier': {
      const r = TIERS[s.tier as Tier] as (typeof TIERS)[Tier] | undefined;
      if (!r) return `I'm on tier ${s.tier}.`;
      const memory = r.memoryMb >= 1024 ? `${r.memoryMb / 1024} GB` : `${r.memoryMb} MB`;
      return `I'm on tier ${s.tier} (${memory} of memory, ${r.cpus} CPU${r.cpus > 1 ? 's' : ''}).`;
    }
    case 'runtime':
      return `My runtime is ${s.runtime}.`;
    case 'uptime':
      return `I've been up for ${formatDuration(s.uptime_s)} (${s.uptime_s} s).`;
  }
}

function introduction(s: WorkspaceSnapshot): string {
  const role = s.role ? ` My role: ${s.role}${/[.!?]$/.test(s.role) ? '' : '.'}` : '';
  return (
    `I'm ${s.name}, the agent of Molecule workspace ${s.id}.${role} ` +
    `I'm running in region ${s.region} on tier ${s.tier} with the ${s.runtime} runtime, and I've been up for ` +
    `${formatDuration(s.uptime_s)}. ${NO_MODEL_HINT}`
  );
}

/** Pure function of the question and the workspace facts, so it is easy to test. */
export function builtinAnswer(question: string, s: WorkspaceSnapshot): string {
  const topics = detectTopics(question);
  if (topics.length > 0) return topics.map((t) => sentence(t, s)).join(' ');
  if (FACT_REQUEST.test(question)) return WHICH_FACT_QUESTION;
  if (INTRO.test(question)) return introduction(s);
  return NO_MODEL_HINT;
}

/** Splits text into word groups of roughly `size` characters, keeping whitespace so the chunks concatenate back exactly. */
export function chunkText(text: string, size = 48): string[] {
  const chunks: string[] = [];
  let current = '';
  for (const token of text.match(/\S+\s*|\s+/g) ?? []) {
    if (current && current.length + token.length > size) {
      chunks.push(current);
      current = '';
    }
    current += token;
  }
  if (current) chunks.push(current);
  return chunks;
}

export class BuiltinResponder implements ChatProvider {
  readonly name = 'builtin';
  readonly model = null;

  constructor(private readonly workspace: Workspace) {}

  async respond(request: RespondRequest): Promise<string> {
    const answer = builtinAnswer(request.userText, this.workspace.snapshot());
    if (request.onText) {
      for (const chunk of chunkText(answer)) {
        if (request.signal.aborted) throw request.signal.reason ?? new Error('aborted');
        request.onText(chunk);
        // Let each chunk reach the socket (and a tasks/cancel get in) before producing the next.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    return answer;
  }
}
