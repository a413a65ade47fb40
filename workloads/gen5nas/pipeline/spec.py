"""The ``Pipeline`` file of ``gen5nas run``: which step manifests to run, in order.

A Pipeline references the step manifests by path (relative to the pipeline file) instead of
repeating them, so each step file stays runnable on its own (``gen5nas train -f ...``) and
applicable to a cluster unchanged. Local only: there is no Pipeline CRD; in a cluster the
operator chains the steps (a NASSearch names its SupernetTraining).

    apiVersion: gen5nas.io/v1alpha1
    kind: Pipeline
    metadata: {name: quickstart}
    spec:
      supernetTraining: supernettraining.yaml
      nasSearch: nassearch.yaml
      subnetExport: subnetexport.yaml   # optional; default: export the best trade-off
      export: true
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from gen5nas.errors import SpecError
from gen5nas.spec.bounds import PathStr
from gen5nas.spec.common import load_spec, task_dataset_error
from gen5nas.spec.export import KIND as EXPORT_KIND
from gen5nas.spec.export import SubnetExportSpec
from gen5nas.spec.search import KIND as SEARCH_KIND
from gen5nas.spec.search import NASSearchSpec
from gen5nas.spec.space import SpecModel
from gen5nas.spec.training import KIND as TRAINING_KIND
from gen5nas.spec.training import SupernetTrainingSpec

KIND = "Pipeline"


class PipelineSpec(SpecModel):
    supernet_training: PathStr = Field(description="SupernetTraining manifest (path)")
    nas_search: PathStr = Field(description="NASSearch manifest (path)")
    subnet_export: PathStr | None = Field(
        default=None,
        description="SubnetExport manifest used as the base of the export (path); its subnet "
        "choice is replaced by the search's best trade-off",
    )
    export: bool = Field(default=True, description="export the best trade-off to ONNX")


class Pipeline:
    """A loaded pipeline: the three step specs, each with the file it came from."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest, self.spec = load_spec(self.path, KIND, PipelineSpec)
        self.train_file = self._ref(self.spec.supernet_training, "supernetTraining")
        self.search_file = self._ref(self.spec.nas_search, "nasSearch")
        self.export_file = (
            self._ref(self.spec.subnet_export, "subnetExport") if self.spec.subnet_export else None
        )
        _, self.train = load_spec(self.train_file, TRAINING_KIND, SupernetTrainingSpec)
        _, self.search = load_spec(self.search_file, SEARCH_KIND, NASSearchSpec)
        self.export: SubnetExportSpec | None = None
        if self.export_file is not None:
            _, self.export = load_spec(self.export_file, EXPORT_KIND, SubnetExportSpec)
        self._check_task(self.search, self.search_file)
        if self.export is not None and self.export_file is not None:
            self._check_task(self.export, self.export_file)

    @property
    def name(self) -> str:
        return self.manifest.name

    def _check_task(self, step: NASSearchSpec | SubnetExportSpec, path: Path) -> None:
        """A later step runs the trained task: its ``task``, when given, is the training's,
        and its dataset serves it (what the step would refuse after the training)."""
        task = self.train.task
        if step.task is not None and step.task != task:
            raise SpecError(
                f"{path}: task {step.task.value}, but {self.train_file.name} trains "
                f"{task.value}: give task: {task.value} or leave task out",
                field="spec.task",
            )
        if problem := task_dataset_error(task, step.dataset):
            where, message = problem
            raise SpecError(
                f"{path}: {message} (the task {self.train_file.name} trains)",
                field="spec.dataset.kind" if where == ("task",) else "spec." + ".".join(where),
            )

    def _ref(self, ref: str, field: str) -> Path:
        path = Path(ref)
        if not path.is_absolute():
            path = self.path.parent / path
        if not path.is_file():
            raise SpecError(
                f"{ref!r} not found (looked for {path}; paths are relative to {self.path})",
                field=f"spec.{field}",
            )
        return path
