// inferlab k6 script: OpenAI chat-completions load for one sweep cell.
// All parameters come from one JSON env var INFERLAB_K6_CONFIG (written by inferlab.load.k6);
// the API key comes from INFERLAB_API_KEY in the environment, never from argv or the config.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';

const C = JSON.parse(__ENV.INFERLAB_K6_CONFIG);
const KEY = __ENV.INFERLAB_API_KEY || '';
// Generated tokens as the server reports them (usage.completion_tokens), per request:
// the cross-check compares their sum with vllm:generation_tokens_total.
const completionTokens = new Counter('completion_tokens');
const promptTokens = new Counter('prompt_tokens');

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

function body() {
  return JSON.stringify({
    model: C.model,
    messages: [{ role: 'user', content: C.prompt }],
    max_tokens: C.max_tokens,
    ignore_eos: C.ignore_eos,
    temperature: C.temperature,
  });
}

// Every request carries a unique X-Request-Id, <run_id>.<cell_id>.<m|w><n>: vLLM names the request
// chatcmpl-<id> (its OTLP span's gen_ai.request.id) and the edge logs it, so client, edge and server
// rows join on it. n is the scenario's iterationInTest (unique across k6 execution segments);
// warm-up requests (setup(), no scenario) are w<segment>-<n>. The id travels in k6's Point
// *metadata*, not a tag: metadata is per-sample and never becomes a time-series key.
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

// Warm-up: `warmup` requests, `warmup_concurrency` at a time (http.batch), before the measured
// scenario starts, so no measured request overlaps a warm-up one. Tagged phase=warmup: analysis
// excludes them and the cross-check counts them.
export function setup() {
  let left = C.warmup || 0;
  while (left > 0) {
    const n = Math.min(left, Math.max(1, C.warmup_concurrency || 1));
    const reqs = [];
    const seg = (__ENV.INFERLAB_K6_SEGMENT || '0') + '-';
    for (let i = 0; i < n; i++) {
      const id = requestId('warmup', seg + (C.warmup - left + i));
      reqs.push({ method: 'POST', url: `${C.base_url}/v1/chat/completions`, body: body(), params: params('warmup', id) });
    }
    // one batch = one sample time for its ids: metadata cannot differ per request inside a batch,
    // so the warm-up ids are in the server's and edge's records, and k6 keeps its phase tag only
    http.batch(reqs).forEach((res) => record(res, 'warmup'));
    left -= n;
  }
}

export default function () {
  const id = requestId('measure', exec.scenario.iterationInTest);
  exec.vu.metrics.metadata.request_id = id;
  const res = http.post(`${C.base_url}/v1/chat/completions`, body(), params('measure', id));
  record(res, 'measure');
  delete exec.vu.metrics.metadata.request_id;
}

function record(res, phase) {
  let usage = null;
  if (res.status === 200) {
    try { usage = res.json('usage'); } catch (e) { usage = null; }
  }
  if (usage) {
    completionTokens.add(usage.completion_tokens || 0, { phase });
    promptTokens.add(usage.prompt_tokens || 0, { phase });
  }
  check(res, { 'status is 200': (r) => r.status === 200 }, { phase });
}
