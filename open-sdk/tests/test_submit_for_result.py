"""``simulate`` asks for its values in the submission (``?wait=&result=arrow``): one request when the
server answers with the result, the run-then-result path when it answers with the run (a run still
going, or a server that does not know ``result=``), and the run when it ended without a result."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from fake_gateway import FMU_ID, RUN_ID, FakeGateway, Twin, fmu_json, problem, run_json
from werkzeug import Response

from fmu_gateway_sdk import FMUGatewayClient, FmuSummary, NotFoundError, RunFailedError, SimulationResult
from fmu_gateway_sdk._fmu_file import FmuFile
from fmu_gateway_sdk.resources.fmus import KnownUploads

RUNS = f"/v1/fmus/{FMU_ID}/runs"


def arrow_ipc() -> bytes:
    sink = io.BytesIO()
    table = pa.table({"time": [0.0, 1.0], "x0": [2.0, 3.0]})
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def result_response() -> Response:
    return Response(arrow_ipc(), content_type="application/vnd.apache.arrow.file",
                    headers={"Location": f"/v1/runs/{RUN_ID}",
                             "Content-Disposition": f'attachment; filename="{RUN_ID}.arrow"'})


def test_a_result_in_the_answer_is_one_request_and_the_run_is_read_when_used(fake: FakeGateway, twin: Twin) -> None:
    fake.answers("POST", RUNS, result_response())
    fake.answers("GET", f"/v1/runs/{RUN_ID}", run_json("succeeded"))
    result = twin("simulate", FMU_ID, stop_time=1)
    assert isinstance(result, SimulationResult) and result.run_id == RUN_ID
    assert result.to_arrow().column("x0").to_pylist() == [2.0, 3.0]
    posted = fake.requests("POST", RUNS)
    assert len(posted) == 1 and posted[0].args["result"] == "arrow" and float(posted[0].args["wait"]) > 0
    assert fake.body("POST", RUNS) == {"stop_time": 1}
    # The sync client reads the run's record lazily (none was read); the async one right away.
    assert len(fake.requests("GET", f"/v1/runs/{RUN_ID}")) == (0 if twin.kind == "sync" else 1)
    assert [r.path for r in fake.requests("GET")] == [f"/v1/runs/{RUN_ID}"] * (twin.kind == "async")


def test_an_answer_with_the_run_goes_on_to_wait_for_its_result(fake: FakeGateway, twin: Twin) -> None:
    fake.serves_runs(created="running")
    result = twin("simulate", FMU_ID, stop_time=1)
    assert result.arrow_ipc == b"arrow-ipc-bytes"
    assert [r.path for r in fake.requests()][:2] == [RUNS, f"/v1/runs/{RUN_ID}/result"]


def test_a_run_answered_as_failed_raises_with_its_log(fake: FakeGateway, twin: Twin) -> None:
    fake.answers("POST", RUNS, run_json("failed", error={"code": "model_error", "message": "the model failed"}))
    fake.answers("GET", f"/v1/runs/{RUN_ID}/log", Response("solver gave up"))
    with pytest.raises(RunFailedError) as raised:
        twin("simulate", FMU_ID, stop_time=1)
    assert raised.value.code == "model_error" and raised.value.log == "solver gave up"
    assert fake.requests("GET", f"/v1/runs/{RUN_ID}/result") == []


class TestKnownUploads:
    """A local file simulated again, unchanged, is neither hashed nor looked up again: one request a run."""

    def test_a_file_simulated_twice_is_one_lookup_and_two_submissions(self, fake: FakeGateway,
                                                                       client: FMUGatewayClient,
                                                                       tmp_path: Path) -> None:
        path = tmp_path / "Model.fmu"
        path.write_bytes(b"PK fake fmu")
        fake.serves_uploads()
        fake.answers("POST", RUNS, result_response())
        client.simulate(path, stop_time=1)
        client.simulate(path, stop_time=1)
        assert len(fake.requests("GET", "/v1/fmus")) == 1 and len(fake.requests("POST", "/v1/fmus")) == 1
        assert len(fake.requests("POST", RUNS)) == 2
        path.write_bytes(b"PK another fmu")  # changed: hashed and looked up again
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        client.simulate(path, stop_time=1)
        assert len(fake.requests("GET", "/v1/fmus")) == 2

    def test_a_remembered_upload_deleted_since_is_uploaded_again(self, fake: FakeGateway, client: FMUGatewayClient,
                                                                  tmp_path: Path) -> None:
        path = tmp_path / "Model.fmu"
        path.write_bytes(b"PK fake fmu")
        fake.serves_uploads()
        assert client.fmus.ensure_uploaded(path).id == FMU_ID
        # Deleted by someone else: the submission and the FMU are 404; the file is looked up and uploaded again.
        fake.answers("POST", RUNS, problem(404, "not_found"), result_response())
        fake.answers("GET", f"/v1/fmus/{FMU_ID}", problem(404, "not_found"))
        client.simulate(path, stop_time=1)
        assert len(fake.requests("POST", RUNS)) == 2 and len(fake.requests("POST", "/v1/fmus")) == 2

    def test_a_404_of_an_fmu_that_exists_is_not_retried(self, fake: FakeGateway, client: FMUGatewayClient,
                                                        tmp_path: Path) -> None:
        path = tmp_path / "Model.fmu"
        path.write_bytes(b"PK fake fmu")
        fake.serves_uploads()
        fake.answers("POST", RUNS, problem(404, "not_found"))
        fake.answers("GET", f"/v1/fmus/{FMU_ID}", fmu_json())
        with pytest.raises(NotFoundError):
            client.simulate(path, stop_time=1)
        assert len(fake.requests("POST", RUNS)) == 1

    def test_at_most_max_files_are_remembered_the_oldest_going_first(self, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(KnownUploads, "MAX_FILES", 2)
        known = KnownUploads()
        files = []
        for i in range(3):
            path = tmp_path / f"M{i}.fmu"
            path.write_bytes(b"PK %d" % i)
            files.append(FmuFile.open(path))
            known.remember(files[-1], FmuSummary.model_validate(fmu_json(id=f"fmu_{i}")))
        assert known.get(files[0]) is None
        kept = [known.get(f) for f in files[1:]]
        assert [k.id if k is not None else None for k in kept] == ["fmu_1", "fmu_2"]
