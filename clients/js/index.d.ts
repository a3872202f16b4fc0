// Types for the aijobs JavaScript SDK (index.js).

export type JobState = 'pending' | 'running' | 'completed' | 'failed' | 'cancelled';
export type JobType = 'training' | 'inference';

export declare const DEFAULT_URL: string;
export declare const TERMINAL_STATES: readonly ['completed', 'failed', 'cancelled'];
export declare const MAX_WAIT_SECONDS: number;

/** POST /jobs/training body, less the two positional arguments. */
export interface TrainingOptions {
  hyperparameters?: Record<string, unknown>;
  description?: string | null;
  requires_gpu?: boolean;
  framework_override?: string | null;
  /** Higher runs first within a queue (-1000..1000, default 0). */
  priority?: number;
  /** The job's wall-clock limit in seconds. */
  timeout_seconds?: number | null;
}

/** POST /jobs/inference body, less the two positional arguments. */
export interface InferenceOptions {
  parameters?: Record<string, unknown>;
  priority?: number;
  timeout_seconds?: number | null;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface SubmitOptions extends RequestOptions {
  /** Defaults to a fresh UUID per call, reused by that call's retries. */
  idempotencyKey?: string;
}

export interface SubmitResponse {
  job_id: string;
  status: 'queued';
  created_at: string;
  estimated_duration: string;
  queue: string;
  queue_has_worker: boolean;
  message: string | null;
}

export interface JobStatus {
  job_id: string;
  job_type: JobType;
  status: JobState;
  queue: string;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  finished_at: string | null;
  progress: number;
  model_type: string | null;
  model_id: string | null;
  description: string | null;
  attempt: number;
  max_attempts: number;
  metrics: Record<string, unknown>;
  history: Array<Record<string, unknown>>;
  result: Record<string, unknown> | null;
  error: string | null;
  /** Why a pending job waits; null for any other job. */
  waiting: Waiting | null;
}

/** A pending job's place in its queue and the workers serving it (docs/monitoring.md). */
export interface Waiting {
  jobs_ahead: number;
  retried_jobs_ahead: number;
  retry_in_seconds: number | null;
  claimed: boolean;
  workers: number;
  idle_slots: number;
  /** The jobs those workers run, as of their heartbeats. */
  busy_with: string[];
  reason: string;
}

export interface JobSummary {
  job_id: string;
  job_type: JobType;
  status: JobState;
  created_at: string;
  updated_at: string;
  queue: string;
  progress: number;
  model_type?: string | null;
  model_id?: string | null;
  error?: string;
}

export interface JobList {
  jobs: JobSummary[];
  total: number;
  limit: number;
  offset: number;
}

export interface ModelInfo {
  model_id: string;
  framework: string;
  framework_version: string | null;
  queue: string;
  model_type: string;
  /** Where the model lies on the API's host; null for a caller who is not an admin. */
  path: string | null;
  job_id: string;
  sha256: string | null;
  metrics: Record<string, unknown>;
  created_at: string;
  /** Bytes of its files; null where the API's host does not see them. */
  size_bytes: number | null;
}

export interface QueueInfo {
  queue: string;
  label: string;
  gpu: boolean;
  pending: number;
  running: number;
  /** How long the claimable job waiting longest has waited (s); null: none waits. */
  oldest_wait_seconds: number | null;
  workers: string[];
  has_worker: boolean;
}

export interface WorkerInfo {
  worker_id: string;
  host: string;
  pid: number;
  queues: string[];
  concurrency: number;
  running: number;
  /** The jobs it runs, as of its last heartbeat. */
  running_jobs: string[];
  started_at: string;
  last_seen: string;
  /** The GPUs it hands out, one per job; none: the CPU. */
  gpus: string[];
  /** Its frameworks' versions, by framework. */
  frameworks: Record<string, string>;
}

export interface Health {
  status: string;
  timestamp: string;
  version: string;
  /** The job store in use: 'sqlite' or 'redis'. */
  store: string;
  [key: string]: unknown;
}

export interface ClientOptions {
  /** Tries after the first for connection errors and 429/502/503/504 (default 3). */
  retries?: number;
  /** First retry delay in ms, doubled each time with jitter (default 250). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Per-request timeout in ms (default 30000); a long-poll gets its wait on top. */
  timeoutMs?: number;
  headers?: Record<string, string>;
  /** API key or JWT, sent as `Authorization: Bearer` (default: $AIJOBS_API_KEY under Node). */
  apiKey?: string;
  fetch?: typeof fetch;
}

/** The API answered with an error: the spec's envelope. */
export declare class AIJobsError extends Error {
  constructor(error: string, detail: string, statusCode: number | null, body?: unknown);
  readonly error: string;
  readonly detail: string;
  /** The HTTP status; null when no answer came back (AIJobsConnectionError). */
  readonly statusCode: number | null;
  readonly body: unknown;
}

/** The server could not be reached, retries included. */
export declare class AIJobsConnectionError extends AIJobsError {
  readonly statusCode: null;
  readonly cause: unknown;
}

/** A wait ran out while the job was still pending or running. */
export declare class AIJobsTimeoutError extends Error {
  readonly jobId: string;
  readonly timeoutMs: number;
  readonly last: JobStatus;
}

export declare function isTerminal(status: JobState | JobStatus | string): boolean;

/** One event of GET /jobs/{id}/events; `id` resumes the stream after it. */
export type JobEvent =
  | { id: string; event: 'state'; data: JobStatus }
  | {
      id: string;
      event: 'progress';
      data: {
        attempt: number;
        progress: number;
        metrics: Record<string, unknown>;
        history_from: number;
        history: Record<string, unknown>[];
      };
    }
  | { id: string; event: 'log'; data: { offset: number; end: number; text: string } };

export declare class AIJobClient {
  /** `baseUrl` defaults to $AIJOBS_URL (Node) or http://localhost:8000. */
  constructor(baseUrl?: string, options?: ClientOptions);
  readonly baseUrl: string;

  submitTrainingJob(
    modelType: string,
    dataPath: string,
    options?: TrainingOptions,
    request?: SubmitOptions,
  ): Promise<SubmitResponse>;
  submitInferenceJob(
    modelId: string,
    inputData: string,
    options?: InferenceOptions,
    request?: SubmitOptions,
  ): Promise<SubmitResponse>;
  /** With `wait` (seconds, at most 60): a long-poll that answers as soon as the job ends. */
  getJobStatus(jobId: string, options?: RequestOptions & { wait?: number }): Promise<JobStatus>;
  /** The final status (completed, failed or cancelled); `timeout` in ms (default 1 hour). */
  waitForCompletion(
    jobId: string,
    timeout?: number,
    options?: RequestOptions & { onUpdate?: (status: JobStatus) => void; pollSeconds?: number },
  ): Promise<JobStatus>;

  /** Each event of the job's event stream, as it happens; resolves with its final status. */
  watchJob(
    jobId: string,
    onEvent: (event: JobEvent) => void | Promise<void>,
    options?: RequestOptions & { lastEventId?: string | null },
  ): Promise<JobStatus>;
  /** Its status about every `everySeconds` (long-polls), until it ends. */
  watchJob(
    jobId: string,
    options?: RequestOptions & { everySeconds?: number; timeout?: number | null },
  ): AsyncGenerator<JobStatus, void, undefined>;
  /** The job's events until its final state; a dropped stream resumes with Last-Event-ID. */
  events(
    jobId: string,
    options?: RequestOptions & { lastEventId?: string | null },
  ): AsyncGenerator<JobEvent, void, undefined>;
  cancelJob(jobId: string, options?: RequestOptions): Promise<JobStatus>;
  listJobs(
    options?: RequestOptions & { status?: JobState; limit?: number; offset?: number },
  ): Promise<JobList>;
  iterJobs(
    options?: RequestOptions & { status?: JobState; pageSize?: number },
  ): AsyncGenerator<JobSummary, void, undefined>;
  getJobLogs(jobId: string, options?: RequestOptions): Promise<string>;
  listModels(options?: RequestOptions): Promise<ModelInfo[]>;
  listQueues(options?: RequestOptions): Promise<QueueInfo[]>;
  listWorkers(options?: RequestOptions): Promise<WorkerInfo[]>;
  health(options?: RequestOptions): Promise<Health>;
}

export default AIJobClient;
