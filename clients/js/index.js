// The JavaScript SDK for the aijobs API: an ES module with no dependencies (global fetch),
// for Node >= 18 and browsers. See README.md and index.d.ts.

export const DEFAULT_URL = 'http://localhost:8000';
export const TERMINAL_STATES = Object.freeze(['completed', 'failed', 'cancelled']);
/** The API's cap on `?wait=` (seconds). */
export const MAX_WAIT_SECONDS = 60;

const RETRY_STATUSES = new Set([429, 502, 503, 504]);
// package.json's version: a browser module cannot read that file, so tests/unit/test_js_sdk.py
// keeps this copy in step with it (and with the Python package's).
const VERSION = '1.0.0';

/** The API answered with an error: the spec's envelope `{error, detail, status_code}`. */
export class AIJobsError extends Error {
  constructor(error, detail, statusCode, body = null) {
    super(statusCode == null ? `${error}: ${detail}` : `${statusCode} ${error}: ${detail}`);
    this.name = 'AIJobsError';
    this.error = error;
    this.detail = detail;
    this.statusCode = statusCode;
    this.body = body;
  }
}

/** The server could not be reached (retries included); `statusCode` is null. */
export class AIJobsConnectionError extends AIJobsError {
  constructor(detail, cause) {
    super('Connection failed', detail, null);
    this.name = 'AIJobsConnectionError';
    this.cause = cause;
  }
}

/** A wait ran out while the job was still active; `last` is its latest status. */
export class AIJobsTimeoutError extends Error {
  constructor(jobId, timeoutMs, last) {
    super(`Job ${jobId} did not complete within ${timeoutMs}ms (still ${last?.status})`);
    this.name = 'AIJobsTimeoutError';
    this.jobId = jobId;
    this.timeoutMs = timeoutMs;
    this.last = last;
  }
}

export function isTerminal(status) {
  return TERMINAL_STATES.includes(typeof status === 'string' ? status : status?.status);
}

function defaultUrl() {
  const env = globalThis.process?.env?.AIJOBS_URL;
  return env || DEFAULT_URL;
}

function uuid4() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  const bytes = new Uint8Array(16);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function abortError(signal) {
  if (signal?.reason !== undefined) return signal.reason;
  const err = new Error('This operation was aborted');
  err.name = 'AbortError';
  return err;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function retryAfterMs(response) {
  const value = response?.headers?.get('Retry-After');
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, when - Date.now());
}

async function errorFrom(response) {
  let body = null;
  const text = await response.text();
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (body && typeof body === 'object' && 'error' in body && 'detail' in body) {
    return new AIJobsError(String(body.error), String(body.detail), response.status, body);
  }
  return new AIJobsError(
    response.statusText || 'HTTP error',
    text.slice(0, 500) || `HTTP ${response.status}`,
    response.status,
    body,
  );
}

/** The last event of a job's stream: its final state. */
function isFinalEvent(event) {
  return event.event === 'state' && TERMINAL_STATES.includes(event.data?.status);
}

/** The events of a text/event-stream body (the fields this API sends). */
async function* readEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let fields = {};
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, '');
        buffer = buffer.slice(newline + 1);
        if (line === '') {
          if (fields.id !== undefined && fields.data !== undefined) {
            yield { id: fields.id, event: fields.event ?? 'message', data: JSON.parse(fields.data) };
          }
          fields = {};
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const name = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1);
          fields[name] = value.startsWith(' ') ? value.slice(1) : value;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function jobPath(jobId, suffix = '') {
  return `/jobs/${encodeURIComponent(jobId)}${suffix}`;
}

/**
 * A client for the aijobs API. The four methods of the spec's example (submitTrainingJob,
 * submitInferenceJob, getJobStatus, waitForCompletion) keep their names and arguments.
 */
export class AIJobClient {
  constructor(baseUrl = defaultUrl(), options = {}) {
    this.baseUrl = String(baseUrl || defaultUrl()).replace(/\/+$/, '');
    this.retries = options.retries ?? 3;
    this.backoffMs = options.backoffMs ?? 250;
    this.maxBackoffMs = options.maxBackoffMs ?? 5000;
    this.timeoutMs = options.timeoutMs ?? 30000;
    this.headers = { ...(options.headers ?? {}) };
    // An API key (or a JWT) for an API that requires credentials; explicit headers win.
    const apiKey = options.apiKey ?? globalThis.process?.env?.AIJOBS_API_KEY;
    if (apiKey && !Object.keys(this.headers).some((h) => h.toLowerCase() === 'authorization')) {
      this.headers.Authorization = `Bearer ${apiKey}`;
    }
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  // -- sending ----------------------------------------------------------------------------------
  async _request(method, path, { query, body, headers, signal, holdMs = 0, parse = 'json', meta } = {}) {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    const init = { method, headers: { Accept: 'application/json', ...this.headers, ...headers } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    if (globalThis.process?.versions?.node) init.headers['User-Agent'] ??= `aijobs-js/${VERSION}`;
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw abortError(signal);
      const response = await this._fetchOnce(url, init, signal, holdMs, attempt);
      if (response instanceof Error) {
        if (attempt >= this.retries) throw response;
        if (meta) meta.retried = true;
        await sleep(this._delay(attempt, null), signal);
        continue;
      }
      if (RETRY_STATUSES.has(response.status) && attempt < this.retries) {
        await response.body?.cancel?.().catch(() => {});
        if (meta) meta.retried = true;
        await sleep(this._delay(attempt, response), signal);
        continue;
      }
      if (!response.ok) throw await errorFrom(response);
      if (parse === 'text') return await response.text();
      const text = await response.text();
      try {
        return JSON.parse(text);
      } catch {
        throw new AIJobsError('Invalid response', `expected JSON, got: ${text.slice(0, 200)}`, response.status);
      }
    }
  }

  /** One try: the Response, or an AIJobsConnectionError to retry; an abort is thrown. */
  async _fetchOnce(url, init, signal, holdMs, attempt) {
    const controller = new AbortController();
    const onAbort = () => controller.abort(abortError(signal));
    signal?.addEventListener('abort', onAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.timeoutMs + holdMs);
    try {
      return await this.fetch(url, { ...init, signal: controller.signal });
    } catch (err) {
      if (signal?.aborted) throw abortError(signal);
      const reason = timedOut ? `no answer within ${this.timeoutMs + holdMs}ms` : describe(err);
      const tries = attempt > 0 ? ` (after ${attempt + 1} attempts)` : '';
      return new AIJobsConnectionError(`cannot reach the aijobs API at ${this.baseUrl}: ${reason}${tries}`, err);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  _delay(attempt, response) {
    const after = retryAfterMs(response);
    if (after !== null) return Math.min(after, this.maxBackoffMs);
    const base = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** attempt);
    return base * (0.5 + Math.random() / 2);
  }

  // -- the spec's methods -------------------------------------------------------------------------
  /** Submit a training job. `options` are the request's other fields (hyperparameters, ...). */
  async submitTrainingJob(modelType, dataPath, options = {}, { signal, idempotencyKey } = {}) {
    const body = { model_type: modelType, data_path: dataPath, ...options };
    return this._submit('training', body, signal, idempotencyKey);
  }

  /** Submit an inference job. `options`: parameters, priority, timeout_seconds. */
  async submitInferenceJob(modelId, inputData, options = {}, { signal, idempotencyKey } = {}) {
    const body = { model_id: modelId, input_data: inputData, ...options };
    return this._submit('inference', body, signal, idempotencyKey);
  }

  async _submit(kind, body, signal, idempotencyKey) {
    // One key per logical submission, reused by every retry: a retried POST never makes a
    // second job.
    const headers = { 'Idempotency-Key': idempotencyKey ?? uuid4() };
    return this._request('POST', `/jobs/${kind}`, { body, headers, signal });
  }

  /**
   * A job's status. With `wait` (seconds, at most 60) the server answers as soon as the job
   * is completed, failed or cancelled, or when the wait runs out (a long-poll).
   */
  async getJobStatus(jobId, { wait, signal } = {}) {
    const hold = wait ? Math.min(Number(wait), MAX_WAIT_SECONDS) : 0;
    return this._request('GET', jobPath(jobId, '/status'), {
      query: hold > 0 ? { wait: hold } : undefined,
      holdMs: hold * 1000,
      signal,
    });
  }

  /**
   * Resolve with the job's final status (completed, failed or cancelled), seen the moment it
   * ends thanks to the long-poll. Rejects with AIJobsTimeoutError after `timeout` ms.
   */
  async waitForCompletion(jobId, timeout = 3600000, { signal, onUpdate, pollSeconds = 30 } = {}) {
    let last;
    for await (last of this.watchJob(jobId, { timeout, signal, everySeconds: pollSeconds })) {
      onUpdate?.(last);
    }
    return last;
  }

  // -- the rest ------------------------------------------------------------------------------------
  /**
   * Follow a job. `watchJob(jobId, onEvent, { lastEventId, signal })`: call `onEvent` with each
   * event of its event stream (GET /jobs/{id}/events: `{id, event, data}`, event "state",
   * "progress" or "log"), as it happens, and resolve with the job's final status; a dropped
   * connection resumes with Last-Event-ID, so no event is missed or repeated.
   * `watchJob(jobId, { everySeconds, timeout, signal })`: an async iterator of the job's status
   * about every `everySeconds` (and at once when it ends), until it is terminal; throws
   * AIJobsTimeoutError when `timeout` ms pass first.
   */
  watchJob(jobId, onEventOrOptions = {}, options = {}) {
    if (typeof onEventOrOptions === 'function') return this._watchEvents(jobId, onEventOrOptions, options);
    return this._watchStatuses(jobId, onEventOrOptions);
  }

  async _watchEvents(jobId, onEvent, { lastEventId = null, signal } = {}) {
    let final = null;
    for await (const event of this.events(jobId, { lastEventId, signal })) {
      await onEvent(event);
      if (isFinalEvent(event)) final = event.data;
    }
    return final;
  }

  /**
   * The job's events (GET /jobs/{id}/events) as an async iterator, until its final state
   * event (the last one). A dropped connection is opened again with the id of the last event
   * received; `lastEventId` resumes an earlier stream.
   */
  async *events(jobId, { lastEventId = null, signal } = {}) {
    const url = new URL(this.baseUrl + jobPath(jobId, '/events'));
    for (let failures = 0; ; ) {
      if (signal?.aborted) throw abortError(signal);
      const headers = { ...this.headers, Accept: 'text/event-stream' };
      if (lastEventId) headers['Last-Event-ID'] = lastEventId;
      if (globalThis.process?.versions?.node) headers['User-Agent'] ??= `aijobs-js/${VERSION}`;
      let failure = null;
      try {
        const response = await this.fetch(url, { headers, signal });
        if (response.status === 204) return; // the job ended, and every one of its events came
        if (!response.ok) {
          if (!RETRY_STATUSES.has(response.status)) throw await errorFrom(response);
          await response.body?.cancel?.().catch(() => {});
        } else {
          for await (const event of readEvents(response.body)) {
            lastEventId = event.id;
            failures = 0;
            yield event;
            if (isFinalEvent(event)) return;
          }
        }
      } catch (err) {
        if (signal?.aborted) throw abortError(signal);
        if (err instanceof AIJobsError) throw err;
        failure = err; // the network: resume the stream
      }
      // The stream failed or ended early (a server stopping): resume it, backing off.
      if (failures >= this.retries) {
        const reason = failure ? describe(failure) : 'the stream kept ending';
        throw new AIJobsConnectionError(`cannot follow job ${jobId} at ${this.baseUrl}: ${reason}`, failure);
      }
      await sleep(this._delay(failures++, null), signal);
    }
  }

  /**
   * Yield the job's status about every `everySeconds` (and at once when it ends), until it
   * is terminal. Throws AIJobsTimeoutError when `timeout` ms pass first.
   */
  async *_watchStatuses(jobId, { everySeconds = 1, timeout = null, signal } = {}) {
    // performance.now(), not Date.now(): a step of the wall clock (NTP, a resumed VM) must not
    // end a wait early or stretch it.
    const start = performance.now();
    const deadline = timeout == null ? null : start + timeout;
    for (;;) {
      let hold = Math.min(Math.max(everySeconds, 0), MAX_WAIT_SECONDS);
      if (deadline !== null) hold = Math.min(hold, Math.max(0, (deadline - performance.now()) / 1000));
      const asked = performance.now();
      const status = await this.getJobStatus(jobId, { wait: hold, signal });
      yield status;
      if (isTerminal(status)) return;
      if (deadline !== null && performance.now() >= deadline) {
        throw new AIJobsTimeoutError(jobId, timeout, status);
      }
      // A server that ignores `wait` (or a proxy) answers at once: poll it at most once a second.
      const spent = performance.now() - asked;
      const pause = Math.min(hold, 1) * 1000 - spent;
      if (pause > 0) await sleep(pause, signal);
    }
  }

  /** Cancel a pending or running job (AIJobsError 400 when it already ended). */
  async cancelJob(jobId, { signal } = {}) {
    const meta = { retried: false };
    try {
      return await this._request('DELETE', jobPath(jobId), { signal, meta });
    } catch (err) {
      // A retried DELETE answered 400 "already cancelled": our first try may have landed and
      // only its answer was lost. Then the cancel worked.
      if (meta.retried && err instanceof AIJobsError && err.statusCode === 400) {
        const current = await this.getJobStatus(jobId, { signal });
        if (current.status === 'cancelled') return current;
      }
      throw err;
    }
  }

  /** One page of jobs, newest first: `{jobs, total, limit, offset}`. */
  async listJobs({ status, limit = 100, offset = 0, signal } = {}) {
    return this._request('GET', '/jobs', { query: { status, limit, offset }, signal });
  }

  /** Every job (newest first), fetched `pageSize` at a time; a job is never yielded twice. */
  async *iterJobs({ status, pageSize = 100, signal } = {}) {
    const seen = new Set();
    for (let offset = 0; ; ) {
      const page = await this.listJobs({ status, limit: pageSize, offset, signal });
      for (const job of page.jobs) {
        if (!seen.has(job.job_id)) {
          seen.add(job.job_id);
          yield job;
        }
      }
      if (page.jobs.length < pageSize) return;
      offset += page.jobs.length;
    }
  }

  /** The job's captured stdout/stderr. */
  async getJobLogs(jobId, { signal } = {}) {
    return this._request('GET', jobPath(jobId, '/logs'), { signal, parse: 'text' });
  }

  async listModels({ signal } = {}) {
    return (await this._request('GET', '/models', { signal })).models;
  }

  async listQueues({ signal } = {}) {
    return (await this._request('GET', '/queues', { signal })).queues;
  }

  async listWorkers({ signal } = {}) {
    return (await this._request('GET', '/workers', { signal })).workers;
  }

  async health({ signal } = {}) {
    return this._request('GET', '/health', { signal });
  }
}

function describe(err) {
  const cause = err?.cause;
  const code = cause?.code ?? err?.code;
  const message = cause?.message ?? err?.message ?? String(err);
  return code && !message.includes(code) ? `${code} ${message}` : message;
}

export default AIJobClient;
