"""The fine-tuning chapter's method comparison: LoRA's variants side by side, QLoRA/LoftQ's
memory line and DoRA's magnitude/direction view, from an :class:`ExperimentResult` that ran
them (``loralab finetune --methods ...``, shown with ``loralab report --finetune DIR``).

Also :func:`read_finetune_result`: an existing ``finetune`` output folder's results, checked
before the report computes anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..choices import DEFAULT_METHODS
from ..errors import LoralabError
from ..method_specs import full_run, method_spec, runs_of
from ..plots.methods import direction_figure, methods_figure
from ..results import ExperimentResult, headline_runs, result_from_dict
from .figure_zh import localized_png as _png
from .text import t

__all__ = ["check_finetune_dir", "method_figures", "method_values", "read_finetune_result"]



def check_finetune_dir(folder: str | Path) -> Path:
    """``folder/results.json``, or one clear line naming what is missing."""
    path = Path(folder) / "results.json"
    if not Path(folder).is_dir():
        raise LoralabError(f"--finetune {str(folder)!r} is not a folder; give the --out "
                           "folder of an earlier 'loralab finetune'")
    if not path.is_file():
        raise LoralabError(f"--finetune {str(folder)!r} holds no results.json; give the --out "
                           "folder of an earlier 'loralab finetune'")
    return path


def _check_complete(folder: Path, path: Path) -> None:
    """The folder's manifest (when it has one) says its run finished, and ``results.json``
    is the file that run wrote (its checksum); else the command that repairs it."""
    from ..fileio import MANIFEST_NAME
    from ..fileio.owned import file_sha256

    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return                                     # an older run, or a copied folder
    except (OSError, ValueError):
        manifest = None
    fix = (f"rerun the same 'loralab finetune --out {str(folder)}' command, which finishes "
           "it, then build the report again")
    if not isinstance(manifest, dict):
        raise LoralabError(f"--finetune {str(folder)!r}: its manifest cannot be read; {fix}")
    if manifest.get("complete") is not True:
        raise LoralabError(f"--finetune {str(folder)!r}: its last run did not finish (the "
                           "manifest says complete: false), so its files may mix two runs; "
                           f"{fix}")
    sums = manifest.get("sha256")
    if isinstance(sums, dict) and "results.json" in sums \
            and sums["results.json"] != file_sha256(path):
        raise LoralabError(f"--finetune {str(folder)!r}: results.json changed since loralab "
                           f"wrote it (its checksum differs); {fix}")


def read_finetune_result(folder: str | Path) -> ExperimentResult:
    """The :class:`ExperimentResult` an earlier ``loralab finetune --out folder`` wrote,
    verified: a finished run (its manifest), unchanged (its checksum), every number a
    finite number (:func:`loralab.results.validate.check_numbers`)."""
    path = check_finetune_dir(folder)
    _check_complete(Path(folder), path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LoralabError(f"--finetune: {str(path)!r} is not readable JSON "
                           f"({type(exc).__name__}); rerun 'loralab finetune'") from None
    if not isinstance(data, dict):
        raise LoralabError(f"--finetune: {str(path)!r} is not a loralab finetune result")
    try:
        return result_from_dict(data)
    except LoralabError as exc:
        raise LoralabError(f"--finetune: {str(path)!r}: {exc}") from None


def method_values(result: ExperimentResult, lang: str) -> dict:
    """``{"methods": rows or None, "quant": rows or None, "md": values or None}`` for the
    chapter's template."""
    extra = set(result.config.methods) - set(DEFAULT_METHODS)
    runs = headline_runs(result) if extra else []
    full = full_run(runs)
    rows = [[r.method, f"{r.trainable_params:,}", f"{r.initial_val_loss:.3f}"
             if r.initial_val_loss is not None else "—", f"{r.final_val_loss:.3f}",
             "—" if full is None else (str(r.steps_to_full_loss) if r.steps_to_full_loss
                                       else t("ft_never", lang)),
             "—" if full is None else f"{r.step_time_s / full.step_time_s:.2f}×",
             f"{r.base_weight_bytes / 2**10:,.0f} KiB"] for r in runs]
    quant = [r for r in runs if method_spec(r.method).quantizes]
    lora = next(iter(runs_of(runs, "lora")), None)
    qtext = None
    if quant and lora is not None:
        q = quant[0]
        qtext = {"ratio": f"{lora.base_weight_bytes / q.base_weight_bytes:.1f}",
                 "lora": f"{lora.final_val_loss:.3f}",
                 "ends": ", ".join(f"{r.method} {r.initial_val_loss:.3f} → "
                                   f"{r.final_val_loss:.3f}" for r in quant)}
    return {"methods": rows or None, "quant": qtext, "md": _md_values(result, lang)}


def _md_values(result: ExperimentResult, lang: str) -> dict | None:
    md = getattr(result.analysis, "magnitude_direction", None)
    if md is None:
        return None
    corr = ", ".join(f"{m} {c:+.2f}" for m, c in md.correlation.items())
    within = ", ".join(f"{m} {c:+.2f}" for m, c in md.within_step.items())
    same = [m for m, ok in md.reproduced.items() if ok]
    verdict = (t("ft_md_yes", lang) if md.reproduced and all(md.reproduced.values())
               else t("ft_md_no", lang, same=", ".join(same) or "—"))
    return {"module": md.module, "corr": corr, "within": within, "verdict": verdict}


def method_figures(result: ExperimentResult, lang: str, font: str | None
                   ) -> list[tuple[bytes, str]]:
    """The methods figure and DoRA's view, when the result has them."""
    out = []
    if set(result.config.methods) - set(DEFAULT_METHODS):
        out.append((_png(methods_figure(result), font), t("ft_cap_methods", lang)))
    md = getattr(result.analysis, "magnitude_direction", None)
    if md is not None:
        out.append((_png(direction_figure(md), font), t("ft_cap_md", lang)))
    return out
