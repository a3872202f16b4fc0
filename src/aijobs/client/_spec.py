"""`AIJobClient`: the API reference's example client, method for method, on the real SDK."""

from __future__ import annotations

from typing import Any

from aijobs.client import _core as core
from aijobs.client._sync import Client


class AIJobClient(Client):
    """The reference's `AIJobClient` (same method names, arguments and plain-dict results), so code
    written against the API reference runs unchanged, plus everything `Client` offers.

    Differences that only make it better: errors raise `APIError` instead of returning the
    error envelope as if it were a job; `wait_for_completion` uses the long-poll (the end is
    seen at once, not up to 5 s late) and treats `cancelled` as the end too (the reference's loop
    would wait out its whole timeout on a cancelled job). The default URL is $AIJOBS_URL, else
    http://localhost:8000.
    """

    def submit_training_job(self, model_type: str, data_path: str, **kwargs: Any) -> Any:
        body = {"model_type": model_type, "data_path": data_path, **kwargs}
        return self._call(core.submit("training", body, None, core.json_body))

    def submit_inference_job(self, model_id: str, input_data: str, **kwargs: Any) -> Any:
        body = {"model_id": model_id, "input_data": input_data, **kwargs}
        return self._call(core.submit("inference", body, None, core.json_body))

    def get_job_status(self, job_id: str) -> Any:
        return self._call(core.Call("GET", core.job_path(job_id, "/status"), core.json_body))

    def wait_for_completion(self, job_id: str, timeout: float = 3600) -> Any:
        """The job's final status (completed, failed or cancelled) as a dict.

        Raises TimeoutError (WaitTimeout) when it is still active after `timeout` seconds.
        """
        return self.wait(job_id, timeout=timeout).model_dump(mode="json")
