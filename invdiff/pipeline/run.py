"""``invdiff solve`` as one library call: files in, reconstruction and manifest out.

:func:`run_solve` checks the outputs (never an input, never an existing file unless
``overwrite``), loads the solver, the prior and the input, solves slice by slice, writes the
mean (and the std map for ``samples > 1``, and every sample when asked) atomically, evaluates
against a reference when one is given, and writes ``OUT.manifest.json`` last.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from invdiff.config import SolveConfig
from invdiff.io import (
    Measurement,
    atomic_outputs,
    check_outputs,
    image_kind,
    is_measurement_file,
    read_image,
    write_image,
)
from invdiff.io.atomic import full_suffix
from invdiff.manifest import (
    ManifestError,
    check_operator_files,
    environment,
    manifest_path,
    operator_files,
    sha256_file,
    write_manifest,
)
from invdiff.metrics import auto_mask, evaluate
from invdiff.pipeline.evaluate import check_same_grid
from invdiff.pipeline.problem import (
    SliceProblem,
    check_measurement_fit,
    load_problem,
    read_input,
)
from invdiff.pipeline.solve import SolveOutput, check_solver_options, for_solver, solve_problem


@dataclass(frozen=True)
class SolveRequest:
    """Files and settings of one solve.

    Attributes:
        input: measurement file or low-resolution image/volume.
        out: output image path (``.nii``/``.nii.gz``, ``.npy``, ``.png`` for 2D).
        config: the resolved configuration.
        reference: optional high-resolution reference; metrics go into the manifest.
        overwrite: replace existing outputs.
        config_file: the TOML file the configuration came from (recorded, never overwritten).
        expected_sha256: ``{"input": ..., "prior": ..., "reference": ...}`` digests a re-run
            must match.
        expected_operator_files: ``{path: digest}`` of the files the operator spec named in the
            run a manifest recorded (mask, coil maps); a re-run must find the same ones.
        ignore_geometry: compare with the reference even when its affine and the output's put
            the voxels in different places.
    """

    input: Path
    out: Path
    config: SolveConfig
    reference: Path | None = None
    overwrite: bool = False
    config_file: Path | None = None
    expected_sha256: dict[str, str | None] = field(default_factory=dict)
    ignore_geometry: bool = False
    expected_operator_files: dict[str, str] | None = None


def output_paths(out: Path, config: SolveConfig) -> dict[str, Path]:
    """``mean``, then ``std`` (samples > 1), ``samples`` (save_samples) and ``manifest`` paths."""
    paths = {"mean": out}
    if config.samples > 1:
        paths["std"] = _suffixed(out, "_std")
    if config.save_samples:
        samples = _suffixed(out, "_samples")
        paths["samples"] = samples.with_suffix(".npy") if image_kind(out) == "png" else samples
    paths["manifest"] = manifest_path(out)
    return paths


def stale_outputs(out: Path, config: SolveConfig) -> list[Path]:
    """Existing ``OUT_std``/``OUT_samples`` files this configuration will not write.

    They are left by an earlier run with more samples or ``save_samples`` and would sit beside
    the new result without belonging to it; the command line names them (it never deletes them).
    """
    written = set(output_paths(out, config).values())
    candidates = [_suffixed(out, "_std"), _suffixed(out, "_samples"),
                  _suffixed(out, "_samples").with_suffix(".npy")]
    return [p for p in dict.fromkeys(candidates) if p.exists() and p not in written]


def run_solve(
    request: SolveRequest, progress: Callable[[float, int], None] | None = None
) -> dict[str, Any]:
    """Run one solve end to end and return the manifest that was written beside the output."""
    from invdiff.priors.registry import resolve_prior
    from invdiff.solvers.registry import get_solver

    t0 = time.perf_counter()
    cfg = request.config
    image_kind(request.out)  # an unknown output format fails before any work
    solver = get_solver(cfg.solver)
    cfg = for_solver(solver, cfg)
    paths = output_paths(request.out, cfg)
    prior_file = _prior_file(cfg.prior)
    if prior_file is not None and Path(cfg.prior).is_file():  # record where it was, absolutely
        cfg = dataclasses.replace(cfg, prior=str(prior_file.resolve()))
    inputs = [p for p in (request.input, request.reference, request.config_file, prior_file) if p]
    check_outputs(list(paths.values()), inputs, request.overwrite)
    if not request.input.is_file():
        raise FileNotFoundError(f"input {request.input} does not exist")
    if request.reference is not None and not request.reference.is_file():
        raise FileNotFoundError(f"reference {request.reference} does not exist")
    digests = {
        "input": sha256_file(request.input),
        "prior": sha256_file(prior_file) if prior_file else None,
        "reference": sha256_file(request.reference) if request.reference else None,
    }
    _check_digests(digests, request.expected_sha256)
    check_device(cfg.device)

    check_solver_options(solver, cfg.solver, cfg.options)
    # with a measurement file and a reference, --frame picks the reference's volume (_reference)
    frame_is_reference = request.reference is not None and is_measurement_file(request.input)
    loaded = read_input(  # bad input is reported before (whatever) the prior
        request.input, dataclasses.replace(cfg, frame=None) if frame_is_reference else cfg)
    # files the operator spec names (masks, coil maps): hashed and checked before the prior loads
    spec = loaded.operator if isinstance(loaded, Measurement) else cfg.operator
    op_files = operator_files(spec) if spec else {}
    if request.expected_operator_files is not None:
        check_operator_files(op_files, request.expected_operator_files)
    t_prior = time.perf_counter()
    prior = resolve_prior(cfg.prior, cfg.device)
    c, ph, pw = prior.image_shape
    if c != 1:
        raise ValueError(f"prior {cfg.prior} models {c}-channel images; magnitude MRI needs 1")
    t_load = time.perf_counter()
    problem = load_problem(request.input, cfg, (ph, pw), loaded)
    check_measurement_fit(problem, cfg.phase)
    if problem.ndim == 3 and image_kind(request.out) == "png":
        raise ValueError(f"output {request.out}: PNG holds 2D images; use .nii.gz or .npy")
    reference = _reference(request, problem, cfg.frame)  # before solving
    t_solve = time.perf_counter()
    output = solve_problem(problem, prior, solver, cfg, progress)
    t_write = time.perf_counter()
    metrics = None if reference is None else {
        "all_voxels": evaluate(reference, output.mean, axis=problem.axis).to_dict(),
        "foreground": evaluate(reference, output.mean, auto_mask(reference),
                               axis=problem.axis).to_dict(),
    }
    manifest = {
        "command": "solve",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": environment(),
        "device": _device_name(cfg.device),
        "config": cfg.to_toml_dict(),
        "seed": cfg.seed,
        "input": {"path": str(request.input.resolve()), "sha256": digests["input"],
                  "kind": problem.kind, "operator": problem.operator,
                  "noise_sigma": problem.noise_sigma, "scale": problem.scale,
                  "slices": int(problem.y.shape[0]), "axis": problem.axis,
                  "operator_files": op_files},
        "prior": {"name": cfg.prior, "sha256": digests["prior"],
                  "image_shape": list(prior.image_shape)},
        "config_file": None if request.config_file is None else {
            "path": str(request.config_file.resolve()),
            "sha256": sha256_file(request.config_file)},
        "outputs": {k: str(v.resolve()) for k, v in paths.items() if k != "manifest"},
        "output_shape": list(output.mean.shape),
        "timings_s": {"prior": t_load - t_prior, "input": t_solve - t_load,
                      "solve": t_write - t_solve},
        "residual": output.residual,
        "batches": output.batches,
        "reference": None if request.reference is None else {
            "path": str(request.reference.resolve()),
            "sha256": digests["reference"], "ignore_geometry": request.ignore_geometry},
        "metrics": metrics,
    }
    with atomic_outputs(list(paths.values()), last_is_record=True) as temps:  # manifest last
        tmp = dict(zip(paths, temps, strict=True))
        _write_images(tmp, output, problem.affine, problem.spatial_unit, problem.xform_code)
        t_end = time.perf_counter()
        manifest["timings_s"].update(write_and_metrics=t_end - t_write, total=t_end - t0)
        write_manifest(tmp["manifest"], manifest)
    return manifest


def _write_images(paths: dict[str, Path], output: SolveOutput, affine: np.ndarray | None,
                  unit: str | None, space: int | None) -> None:
    write_image(paths["mean"], output.mean, affine, unit, xform_code=space)
    if "std" in paths and output.std is not None:
        write_image(paths["std"], output.std, affine, unit, xform_code=space)
    if "samples" in paths and output.samples is not None:
        samples = output.samples
        if image_kind(paths["samples"]) == "nifti":
            samples = np.moveaxis(samples, 0, -1)  # (..., K): one volume per sample
        write_image(paths["samples"], samples, affine, unit, xform_code=space)


def _reference(
    request: SolveRequest, problem: SliceProblem, frame: int | None
) -> np.ndarray | None:
    """The reference image, checked against the output's shape and grid before any solving.

    ``frame`` picks the volume of a 4D image input, and of a 4D reference beside it; with a
    measurement file (one volume) it picks the reference's volume, so the reference must be 4D.
    """
    path, shape = request.reference, problem.output_shape
    if path is None:
        return None
    ref = read_image(path, frame=frame, frame_if_4d=problem.kind != "measurement")
    if ref.data.shape != tuple(shape):
        raise ValueError(f"reference {path} has shape {ref.data.shape}; the output will be {shape}")
    if not request.ignore_geometry:
        check_same_grid((problem.affine, problem.spatial_unit,
                         f"the reconstruction of {request.input}"),
                        (ref.affine, ref.spatial_unit, f"reference {path}"), shape)
    return ref.data


def check_device(device: str) -> None:
    """Refuse a device this machine lacks with one line (torch raises mid-run otherwise)."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device} requested but CUDA is not available; use cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device} requested but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")


def _check_digests(found: dict[str, str | None], expected: dict[str, str | None]) -> None:
    for key, digest in expected.items():
        if digest is not None and found.get(key) != digest:
            raise ManifestError(
                f"the {key} file differs from the one the manifest recorded (sha256 "
                f"{found.get(key)} != {digest}); the re-run would not repeat it"
            )


def _prior_file(name: str) -> Path | None:
    """The file behind a prior argument (a checkpoint path, or the default's weights)."""
    if Path(name).is_file():
        return Path(name)
    if name == "default":
        from invdiff.priors.default import DEFAULT_WEIGHTS

        return DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None
    return None


def _suffixed(path: Path, suffix: str) -> Path:
    name = path.name
    ext = full_suffix(path)
    return path.with_name(name[: len(name) - len(ext)] + suffix + ext)


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    import platform

    return f"{device} ({platform.processor() or platform.machine()})"
