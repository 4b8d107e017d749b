// inferlab k6 script: OpenAI chat-completions load for one sweep cell.
// All parameters come from one JSON env var INFERLAB_K6_CONFIG (written by inferlab.load.k6);
// the API key comes from INFERLAB_API_KEY in the environment, never from argv or the config.
import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';

const C = JSON.parse(__ENV.INFERLAB_K6_CONFIG);
const KEY = __ENV.INFERLAB_API_KEY || '';
// Generated tokens as the server reports them (usage.completion_tokens), per request:
// the cross-check compares their sum with vllm:generation_tokens_total.
const completionTokens = new Counter('completion_tokens');
const promptTokens = new Counter('prompt_tokens');
// A workload (C.workload, from inferlab.load.workload) replaces the one fixed prompt: see the
// workload section below. Its open-loop sends are timed against their schedule.
const W = C.workload || null;
const sendLag = new Trend('send_lag_ms');  // actual send - scheduled time, stamped right before sending
const lateSends = new Counter('late_sends');  // sends later than the workload's late_ms
const abandonedTurns = new Counter('abandoned_turns');  // turns not sent because an earlier turn failed
// One Point per workload request, value 1, whose metadata says what was sent (session, turn,
// lengths, schedule, send time). Kept off the http_req_* Points on purpose: k6 writes a Point's
// metadata in map order, which differs between Points, and the reader groups a request's
// http_req_* Points by identical tags + metadata, so those carry request_id alone.
const workloadRequests = new Counter('workload_requests');

// The cell's tags: the scenario carries them, and setup() (no scenario) sets them itself.
const CELL_TAGS = { payload: C.payload, cell: C.cell_id, vus: String(C.vus || '') };

function scenario() {
  if (C.executor === 'constant-arrival-rate') {
    // rates may be fractional (a capacity search bisects): requests per 100 s keeps 0.01 r/s steps
    return { executor: 'constant-arrival-rate', rate: Math.round(C.rate * 100), timeUnit: '100s',
      duration: `${C.duration_s}s`, preAllocatedVUs: C.pre_allocated_vus, maxVUs: C.max_vus, tags: CELL_TAGS };
  }
  if (C.executor === 'ramping-arrival-rate') {
    return { executor: 'ramping-arrival-rate', startRate: C.rate_from, timeUnit: '1s',
      preAllocatedVUs: C.pre_allocated_vus, maxVUs: C.max_vus,
      stages: [{ target: C.rate_to, duration: `${C.duration_s}s` }], tags: CELL_TAGS };
  }
  if (C.executor === 'constant-vus') {
    return { executor: 'constant-vus', vus: C.vus, duration: `${C.duration_s}s`, tags: CELL_TAGS };
  }
  // shared-iterations, also for a workload's open loop ('scheduled'): a free VU takes the next
  // session and sleeps until its scheduled time, so a send is late only when every VU is busy
  return { executor: 'shared-iterations', vus: C.vus, iterations: C.iterations,
    maxDuration: `${C.max_duration_s}s`, tags: CELL_TAGS };
}

export const options = {
  scenarios: { cell: scenario() },
  // warm-up runs in setup(), which k6 finishes before any scenario starts
  setupTimeout: `${(C.warmup_rounds || 1) * C.timeout_s + 30}s`,
  batch: Math.max(1, C.warmup_concurrency || 1),
  batchPerHost: Math.max(1, C.warmup_concurrency || 1),
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  thresholds: C.thresholds,
  insecureSkipTLSVerify: !!C.tls_skip_verify,
  discardResponseBodies: false,
};

// C.stream: ask for an SSE stream (as chat clients do) with the usage chunk at its end, so the
// generated tokens stay known. k6 reads the whole stream before it returns: its timings are the
// full answer's, and http_req_waiting is the time to the response headers, which vLLM sends
// before the first token: it is not TTFT (load/stream_clock.py times the tokens).
function withStream(req) {
  if (C.stream) {
    req.stream = true;
    req.stream_options = { include_usage: true };
  }
  return JSON.stringify(req);
}

function body() {
  return withStream({
    model: C.model,
    messages: [{ role: 'user', content: C.prompt }],
    max_tokens: C.max_tokens,
    ignore_eos: C.ignore_eos,
    temperature: C.temperature,
  });
}

// The last SSE event before `data: [DONE]`: with include_usage, the usage chunk. Cheap: two
// lastIndexOf on the body string and one small JSON.parse, never a parse of every event.
function lastEvent(text) {
  const done = text.lastIndexOf('data: [DONE]');
  const end = done < 0 ? text.length : done;
  const start = text.lastIndexOf('data: ', end - 1);
  return start < 0 ? null : JSON.parse(text.slice(start + 6, end).trim());
}

// A response's JSON field (usage, the answer): from the body, or from the SSE events when the
// answer was streamed (a server may answer a stream request with plain JSON: both are read).
function isStream(res) {
  return typeof res.body === 'string' && res.body.startsWith('data:');
}

function usageOf(res) {
  if (!isStream(res)) return res.json('usage');
  const last = lastEvent(res.body);
  return last ? last.usage || null : null;
}

// The streamed answer text: every content delta in order (multi-turn workloads only need it).
function answerOf(res) {
  if (!isStream(res)) return res.json('choices.0.message.content');
  let text = '';
  res.body.split('\n').forEach((line) => {
    if (!line.startsWith('data: {')) return;
    const choice = (JSON.parse(line.slice(6)).choices || [])[0];
    if (choice && choice.delta && choice.delta.content) text += choice.delta.content;
  });
  return text;
}

// Every request carries a unique X-Request-Id, <run_id>.<cell_id>.<m|w><n>: vLLM names the request
// chatcmpl-<id> (its OTLP span's gen_ai.request.id) and the edge logs it, so client, edge and server
// rows join on it. n is the scenario's iterationInTest (unique across k6 execution segments);
// warm-up requests (setup(), no scenario) are w<segment>-<n> (setup()). The id travels in k6's
// Point *metadata*, not a tag: metadata is per-sample and never becomes a time-series key.
function requestId(phase, n) {
  return `${C.run_id}.${C.cell_id}.${phase === 'warmup' ? 'w' : 'm'}${n}`;
}

function params(phase, id) {
  return {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}`, 'X-Request-Id': id },
    timeout: `${C.timeout_s}s`,
    tags: { ...CELL_TAGS, phase, name: 'chat' },
  };
}

// This process's place among the processes of its cell: the position of its k6 execution segment
// in the segment sequence, read from k6's own options, so local processes, Job pods and
// k6-operator runners (which pass --execution-segment themselves) agree. One process: 0 of 1.
function segmentOf() {
  const o = exec.test.options;
  if (!o.executionSegmentSequence) return { index: 0, count: 1 };
  const frac = (text) => { const [a, b] = text.split('/'); return Number(a) / Number(b || 1); };
  const cuts = o.executionSegmentSequence.split(',').map(frac);
  const start = frac((o.executionSegment || '0:1').split(':')[0]);
  const index = cuts.findIndex((c) => Math.abs(c - start) < 1e-12);
  if (index < 0 || index >= cuts.length - 1) {
    throw new Error(`execution segment ${o.executionSegment} is not in its sequence ${o.executionSegmentSequence}`);
  }
  return { index, count: cuts.length - 1 };
}

// Warm-up: `warmup` requests in rounds of `warmup_concurrency` (http.batch), before the measured
// scenario starts, so no measured request overlaps a warm-up one. Tagged phase=warmup: analysis
// excludes them and the cross-check counts them. k6 runs setup() in every process of a segmented
// cell (local processes, Job pods, and k6-operator runners alike: an open upstream issue), so each
// process sends its share: request n of a round goes to the segment (n - round start) mod N. Together
// they send the warm-up one process would, at the cell's concurrency, with ids w<segment>-<n> (n
// counted over the whole warm-up, so unique across processes); a process without a slot sends none.
export function setup() {
  const seg = segmentOf();
  const total = C.warmup || 0;
  const concurrency = Math.max(1, C.warmup_concurrency || 1);
  for (let start = 0; start < total; start += concurrency) {
    const reqs = [];
    for (let n = start; n < Math.min(total, start + concurrency); n++) {
      if ((n - start) % seg.count !== seg.index) continue;
      reqs.push({ method: 'POST', url: `${C.base_url}/v1/chat/completions`, body: W ? workloadWarmupBody(n) : body(),
        params: params('warmup', requestId('warmup', `${seg.index}-${n}`)) });
    }
    // one batch = one sample time for its ids: metadata cannot differ per request inside a batch,
    // so the warm-up ids are in the server's and edge's records, and k6 keeps its phase tag only
    if (reqs.length > 0) http.batch(reqs).forEach((res) => record(res, 'warmup'));
  }
}

export default function () {
  if (W) return runSession();
  const id = requestId('measure', exec.scenario.iterationInTest);
  exec.vu.metrics.metadata.request_id = id;
  const res = http.post(`${C.base_url}/v1/chat/completions`, body(), params('measure', id));
  record(res, 'measure');
  delete exec.vu.metrics.metadata.request_id;
}

// Returns the response's usage (null when it failed or had none).
function record(res, phase) {
  let usage = null;
  if (res.status === 200) {
    try { usage = usageOf(res); } catch (e) { usage = null; }
  }
  if (usage) {
    completionTokens.add(usage.completion_tokens || 0, { phase });
    promptTokens.add(usage.prompt_tokens || 0, { phase });
  }
  check(res, { 'status is 200': (r) => r.status === 200 }, { phase });
  return usage;
}

// ---- workloads -------------------------------------------------------------------------------
// Prompt text is rendered here from the workload's seed: words of W.vocab drawn by a seeded
// PRNG (FNV-1a of a string key -> mulberry32). Words per prompt follow the calibration
// (tokens = base + tokens_per_word x words); the rendered text is never shipped.
const CAL = W ? W.calibration : null;

function hash32(str) {
  let h = 0x811c9dc5;
  for (let i = 0; i < str.length; i++) { h ^= str.charCodeAt(i); h = Math.imul(h, 0x01000193); }
  return h >>> 0;
}

function prng(key) {
  let a = hash32(key);
  return function () {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function words(r, n) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = W.vocab[Math.floor(r() * W.vocab.length)];
  return out.join(' ');
}

function wordsFor(tokens, overhead) {
  return Math.max(1, Math.round((tokens - overhead) / CAL.tokens_per_word));
}

// A session's first messages: a shared-prefix member opens with its group's prefix (system
// message), anyone else with LEAD unique words (keyed by seed, run, salt = cell id, session), so
// no two sessions share a KV block unless they share a prefix group, not even across runs
// against a server that is not restarted between them (url, k8s): its cache would serve a
// repeated run's prompts. Prefix groups stay the same across runs (a shared system prompt is).
function firstTurn(s, salt) {
  const r = prng(`${W.seed}:${C.run_id}:${salt}:${s}`);
  const total = Math.max(W.lead_words + 1, wordsFor(W.input[s][0], CAL.base_tokens));
  const group = W.group[s];
  let system, userWords;
  const blocks = W.blocks ? W.blocks[s] : [];
  if (blocks.length > 0) {
    // a Mooncake trace: block b's text depends on the seed and b only, so requests naming the same
    // leading blocks send the same leading text (load/workload.py); then the unique tail
    const bw = Math.max(1, Math.round(W.block_tokens / CAL.tokens_per_word));
    system = blocks.map((b) => words(prng(`${W.seed}:block:${b}`), bw)).join(' ');
    userWords = Math.max(W.lead_words, total - bw * blocks.length);
    return { r, messages: [{ role: 'system', content: system }, { role: 'user', content: words(r, userWords) }],
      expected: CAL.base_tokens + CAL.tokens_per_word * (bw * blocks.length + userWords) };
  }
  if (group >= 0) {
    const pw = Math.max(1, Math.round(W.prefix_tokens / CAL.tokens_per_word));
    system = words(prng(`${W.seed}:prefix:${group}`), pw);
    userWords = Math.max(W.lead_words, total - pw);
    return { r, messages: [{ role: 'system', content: system }, { role: 'user', content: words(r, userWords) }],
      expected: CAL.base_tokens + CAL.tokens_per_word * (pw + userWords) };
  }
  system = words(r, W.lead_words);
  userWords = total - W.lead_words;
  return { r, messages: [{ role: 'system', content: system }, { role: 'user', content: words(r, userWords) }],
    expected: CAL.base_tokens + CAL.tokens_per_word * total };
}

function workloadBody(messages, s, t) {
  return withStream({ model: C.model, messages, max_tokens: W.output[s][t], ignore_eos: W.ignore_eos,
    temperature: W.temperature });
}

// Warm-up request n of a workload: the first turn of session n mod sessions, salted as one process
// always salted it (w0), so a split warm-up sends the same prompts as an unsplit one.
function workloadWarmupBody(n) {
  const s = n % W.input.length;
  return workloadBody(firstTurn(s, `w0.${C.cell_id}`).messages, s, 0);
}

function describe(md, fields) {
  Object.keys(fields).forEach((k) => { md[k] = String(fields[k]); });
  workloadRequests.add(1, { phase: 'measure' });
  Object.keys(fields).forEach((k) => delete md[k]);
}

// One iteration = one session (one request unless multi-turn). Open loop: the session waits for
// its scheduled time (scenario start + start_ms) whatever earlier sessions are doing; later
// turns follow the answer plus think time. Request ids: m<session>, or m<session>-<turn>.
function runSession() {
  const s = exec.scenario.iterationInTest;
  if (s >= W.input.length) return;
  let due = W.start_ms ? exec.scenario.startTime + W.start_ms[s] : null;
  if (due !== null) {
    const wait = due - Date.now();
    if (wait > 0) sleep(wait / 1000);
  }
  const first = firstTurn(s, C.cell_id);
  const messages = first.messages;
  let expected = first.expected;
  const turns = W.input[s].length;
  for (let t = 0; t < turns; t++) {
    if (t > 0) {
      if (W.think_s > 0) sleep(W.think_s);
      messages.push({ role: 'user', content: words(first.r, wordsFor(W.input[s][t], CAL.message_tokens)) });
      due = null;  // a later turn is scheduled by its session, not the clock
    }
    const id = requestId('measure', W.multi_turn ? `${s}-${t}` : `${s}`);
    const body = workloadBody(messages, s, t);
    const md = exec.vu.metrics.metadata;
    md.request_id = id;
    const sent = Date.now();  // stamped right before sending
    const res = http.post(`${C.base_url}/v1/chat/completions`, body, params('measure', id));
    const usage = record(res, 'measure');  // its usage Points carry the request_id
    const fields = { session: s, turn: t, prefix_group: W.group[s], input_tokens: W.input[s][t],
      output_tokens: W.output[s][t], expected_prompt_tokens: Math.round(expected), sent_ms: sent };
    if (due !== null) {
      const lag = sent - due;
      Object.assign(fields, { scheduled_ms: W.start_ms[s], send_lag_ms: lag });
      sendLag.add(lag, { phase: 'measure' });
      if (lag > W.late_ms) lateSends.add(1, { phase: 'measure' });
    }
    describe(md, fields);
    delete md.request_id;
    let answer = null;
    if (usage && t + 1 < turns) {
      try { answer = answerOf(res); } catch (e) { answer = null; }
    }
    if (t + 1 >= turns) break;
    if (answer === null) {  // the conversation cannot go on without the answer
      abandonedTurns.add(turns - t - 1, { phase: 'measure' });
      break;
    }
    messages.push({ role: 'assistant', content: answer });
    expected = usage.prompt_tokens + usage.completion_tokens + CAL.message_tokens + W.input[s][t + 1];
  }
}
