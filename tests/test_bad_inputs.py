"""The catalogue of bad inputs a user can give `lpm run`: a seed-layout folder, a manifest of raw files or a
run parameter. Each stops before any chapter runs with one paragraph that says what to change (no
traceback), raises its own error type, and leaves every input byte for byte as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from test_cohort import PY_FILE, RNA_FILE, _set, small_cohort
from test_manifest import edited, write_small_cohort, write_split_cohort

from lpmlib import cli, errors
from lpmlib.artifacts import folder_hashes
from lpmlib.cohort import METADATA_FILE, write_seed_layout
from lpmlib.manifest_spec import ManifestError
from lpmlib.params import ParameterError, load_params, parse_override
from lpmlib.sources import cohort_source

PROJECT = Path(__file__).resolve().parents[1]
SEED = ["-p", "knockout_gene=ERG", "-p", "fusion_gene=ERG", "-p", "colour_driver=ERG"]
SMALL = [
    "-p",
    "knockout_gene=TP53",
    "-p",
    "fusion_gene=PTEN",
    "-p",
    "colour_driver=TP53",
    "-p",
    "pca_layer=prot",
]
SPLIT = ["-p", "knockout_gene=KRAS", "-p", "fusion_gene=APC", "-p", "colour_driver=KRAS"]


def seed(corrupt: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    """A seed-layout folder, corrupted."""

    def make(folder: Path) -> list[str]:
        write_seed_layout(small_cohort(), folder)
        corrupt(folder)
        return ["-p", f"data_dir={folder}", *SEED]

    return make


def manifest(
    edit: Callable[[dict], object], writer=write_small_cohort, names=SMALL
) -> Callable[[Path], list[str]]:
    """A manifest of small raw files, its YAML edited."""

    def make(folder: Path) -> list[str]:
        return ["-p", f"manifest={edited(writer(folder), edit)}", *names]

    return make


def raw_file(file: str, change: Callable[[str], str], writer=write_small_cohort, names=SMALL):
    """A manifest of small raw files, one of its files edited as text."""

    def make(folder: Path) -> list[str]:
        path = writer(folder)
        target = folder / file
        target.write_text(change(target.read_text()))
        return ["-p", f"manifest={path}", *names]

    return make


def parameter(*pairs: str) -> Callable[[Path], list[str]]:
    """A good seed-layout folder and a bad run parameter."""

    def make(folder: Path) -> list[str]:
        return seed(lambda f: None)(folder) + [arg for pair in pairs for arg in ("-p", pair)]

    return make


def write_bytes(file: str, data: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / file).write_bytes(data)


def replace_text(file: str, old: str, new: str) -> Callable[[Path], None]:
    def corrupt(folder: Path) -> None:
        text = (folder / file).read_text()
        assert old in text
        (folder / file).write_text(text.replace(old, new, 1))

    return corrupt


def duplicate_header(text: str) -> str:
    header, rest = text.split("\n", 1)
    names = header.split("\t")
    return "\t".join(names[:-1] + [names[1]]) + "\n" + rest


# case: (inputs, error type, what the message must name)
CATALOGUE = {
    # the seed layout
    "seed: a missing layer file": (
        seed(lambda f: (f / RNA_FILE).unlink()),
        errors.MissingFileError,
        [RNA_FILE, "file not found"],
    ),
    "seed: an empty file": (seed(write_bytes(PY_FILE, b"")), errors.EmptyFileError, [PY_FILE, "empty"]),
    "seed: a duplicated case_id": (
        seed(_set(PY_FILE, 4, 0, "P002")),
        errors.DuplicateCaseIdError,
        [PY_FILE, "'P002'", "duplicate case_id"],
    ),
    "seed: a cell that is not a number": (
        seed(_set(RNA_FILE, 2, 1, "abc")),
        errors.NonNumericValueError,
        [RNA_FILE, "column 'PC1'", "'abc'"],
    ),
    "seed: an infinite value": (
        seed(_set(RNA_FILE, 1, 3, "-inf")),
        errors.NonFiniteValueError,
        [RNA_FILE, "column 'PC3'", "'-inf'"],
    ),
    "seed: a value beyond the bound": (
        seed(_set(RNA_FILE, 1, 2, "1e300")),
        errors.OutOfRangeValueError,
        [RNA_FILE, "column 'PC2'", "'1e300'", "1e+15"],
    ),
    "seed: a missing value": (
        seed(_set(RNA_FILE, 0, 1, "")),
        errors.MissingValueError,
        [RNA_FILE, "column 'PC1'", "missing value"],
    ),
    "seed: a file that is not UTF-8": (
        seed(
            lambda f: (f / METADATA_FILE).write_bytes(
                (f / METADATA_FILE).read_bytes() + "P999,\u00e9\n".encode("latin-1")
            )
        ),
        errors.EncodingError,
        [METADATA_FILE, "cannot be read as utf-8", "Save it as UTF-8"],
    ),
    "seed: a driver cell 'maybe'": (
        seed(_set(METADATA_FILE, 3, 2, "maybe")),
        errors.AmbiguousValueError,
        [METADATA_FILE, "column 'ERG'", "'maybe'", "Write 1 (altered) or 0"],
    ),
    "seed: a column named twice": (
        seed(replace_text(RNA_FILE, "PC2", "PC1")),
        errors.DuplicateColumnError,
        [RNA_FILE, "column 'PC1'", "named twice"],
    ),
    "seed: a grade that cannot be read": (
        seed(_set(METADATA_FILE, 0, 1, "high")),
        errors.InvalidGradeError,
        [METADATA_FILE, "'high'"],
    ),
    "seed: no PTM layer": (
        seed(lambda f: [p.unlink() for p in f.glob("LPM_*_pc_top50.csv") if "protein" not in p.name]),
        errors.MissingFileError,
        ["no PTM layer file found"],
    ),
    "seed: fewer patients than folds": (
        seed(
            lambda f: (f / PY_FILE).write_text("\n".join((f / PY_FILE).read_text().splitlines()[:4]) + "\n")
        ),
        errors.TooFewPatientsError,
        ["fewer than the 5 folds", "Add patients or lower the number of folds"],
    ),
    # a manifest of raw files
    "manifest: a misspelt key": (
        manifest(lambda m: m["layers"]["prot"].update(orientaton="features_x_samples")),
        ManifestError,
        ["unknown key 'orientaton' in layers.prot", "Did you mean 'orientation'?"],
    ),
    "manifest: a misspelt top-level key": (
        manifest(lambda m: m.update(known_effect=[])),
        ManifestError,
        ["unknown key 'known_effect' in the manifest", "Did you mean 'known_effects'?"],
    ),
    "manifest: a file that does not exist": (
        manifest(lambda m: m["layers"]["prot"].update(file="nope.tsv")),
        errors.MissingFileError,
        ["nope.tsv", "file of layers.prot not found"],
    ),
    "manifest: the wrong encoding": (
        manifest(lambda m: m["clinical"].update(encoding="utf-8")),
        errors.EncodingError,
        ["clinical.txt", "cannot be read as utf-8", "Set 'encoding' of clinical"],
    ),
    "manifest: a role that does not exist": (
        manifest(lambda m: m["layers"]["phos"].update(role="ptms")),
        ManifestError,
        ["the role of layer 'phos' must be one of target, ptm", "'ptms'", "Did you mean 'ptm'?"],
    ),
    "manifest: a driver gene absent from the mutations": (
        manifest(lambda m: m["drivers"]["mutations"].update(genes=["PTEN", "KRAS"])),
        ManifestError,
        ["mutations.tsv", "column 'KRAS'", "driver gene absent"],
    ),
    "manifest: an endpoint that is not a layer": (
        manifest(lambda m: m.update(endpoint="metabolome")),
        ManifestError,
        ["column 'endpoint'", "'metabolome'", "Layers: phos, prot"],
    ),
    "manifest: a grade and a stage": (
        manifest(lambda m: m["clinical"].update(stage=m["clinical"]["grade"])),
        ManifestError,
        ["both a grade and a stage"],
    ),
    "manifest: an MSI value in no list": (
        manifest(
            lambda m: m["drivers"]["clinical"]["MSI-H"].update(not_altered=["MSI-L"]),
        ),
        errors.AmbiguousValueError,
        ["clinical.txt", "column 'msi'", "'MSS'", "Add it to one of the lists of drivers.clinical.MSI-H"],
    ),
    "manifest: normal IDs without the suffix": (
        manifest(
            lambda m: m["layers"]["rna"]["normals"].update(sample_ids={"suffix": "-N"}),
            write_split_cohort,
            SPLIT,
        ),
        ManifestError,
        ["normal/rna.tsv", "'C00.N'", "does not follow the suffix '-N'"],
    ),
    "manifest: a mutation class that does not exist": (
        manifest(lambda m: m["drivers"]["mutations"].update(classes=["nonsense"]), write_split_cohort, SPLIT),
        ManifestError,
        ["'nonsense'", "missense, truncating, inframe, splice, other"],
    ),
    "manifest: target parents in a cycle": (
        manifest(lambda m: m["layers"]["rna"].update(parents=["protein"]), write_split_cohort, SPLIT),
        ManifestError,
        ["the layers' parents form a cycle"],
    ),
    "manifest: a raw cell that is not a number": (
        raw_file("prot.tsv", lambda t: t.replace("\n", "\nG9\tabc" + "\t0" * 9 + "\n", 1)),
        errors.NonNumericValueError,
        ["prot.tsv", "'abc'", "column 'G9'"],
    ),
    "manifest: a raw value beyond the bound": (
        raw_file("phos.tsv", lambda t: t.replace("\n", "\nG9\t1e300" + "\t0" * 9 + "\n", 1)),
        errors.OutOfRangeValueError,
        ["phos.tsv", "column 'G9'", "beyond the bound"],
    ),
    "manifest: a sample column named twice": (
        raw_file("prot.tsv", duplicate_header),
        errors.DuplicateColumnError,
        ["prot.tsv", "column 'S00'", "named twice"],
    ),
    "manifest: an unknown preprocessing setting": (
        manifest(lambda m: m["layers"]["phos"].update(preprocessing={"n_pcs": 3})),
        ManifestError,
        ["unknown key 'n_pcs' in layers.phos.preprocessing", "n_components"],
    ),
    "manifest: a known effect on a feature the layer lacks": (
        manifest(
            lambda m: m.update(
                known_effects=[{"driver": "TP53", "layer": "prot", "feature": "XX", "altered": "higher"}]
            )
        ),
        ManifestError,
        ["'XX'", "feature of known_effects[0] is not in layer 'prot'"],
    ),
    "manifest: not YAML": (
        raw_file("manifest.yaml", lambda t: t + "\n  - : [unclosed\n"),
        ManifestError,
        ["manifest.yaml", "not a readable YAML file: expected <block end>, but found '-' at line 40"],
    ),
    # run parameters
    "parameter: a negative learning rate": (
        parameter("learning_rate=-1"),
        ParameterError,
        ["learning_rate", "-1"],
    ),
    "parameter: a negative batch": (parameter("batch_size=-1"), ParameterError, ["batch_size", "-1"]),
    "parameter: a device that does not exist": (parameter("device=tpu"), ParameterError, ["device", "'tpu'"]),
    "parameter: a knockout gene that is not a driver": (
        parameter("knockout_gene=ER"),
        ParameterError,
        ["knockout_gene='ER' is not a driver of this cohort", "Did you mean 'ERG'?", "ERG, PTEN, TP53"],
    ),
    "parameter: a fusion gene that is not a driver": (
        parameter("fusion_gene=TMPRSS2"),
        ParameterError,
        ["fusion_gene='TMPRSS2' is not a driver", "-p fusion_gene=<driver>"],
    ),
    "parameter: an endpoint that is not a layer": (
        parameter("endpoint=metabolite"),
        ParameterError,
        ["endpoint='metabolite' is not a layer of this cohort", "Did you mean 'metabolome'?"],
    ),
    "parameter: a name that does not exist": (parameter("epoch=3"), ParameterError, ["epoch"]),
    "parameter: a number that is text": (parameter("epochs=many"), ParameterError, ["epochs", "many"]),
}


def expected_type(args: list[str], folder: Path) -> type[Exception] | None:
    """The error the checks run before the first chapter raise (None when they pass)."""
    overrides = dict(parse_override(args[i + 1]) for i in range(0, len(args), 2) if args[i] == "-p")
    try:
        cohort_source(load_params(None, overrides)).check(PROJECT)
    except Exception as error:  # noqa: BLE001 -- the catalogue checks the type
        return type(error)
    return None


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_a_bad_input_stops_the_run_with_a_paragraph_that_names_it(case: str, tmp_path: Path, capsys) -> None:
    make, error, names = CATALOGUE[case]
    folder = tmp_path / "inputs"
    args = make(folder)
    before = folder_hashes(folder)
    assert expected_type(args, folder) is error
    status = cli.main(
        ["run", *args, "-p", f"run_dir={tmp_path / 'run'}", "--no-book", "--project", str(PROJECT)]
    )
    message = capsys.readouterr().err
    assert status != 0 and message.startswith("lpm: error: ")
    assert all(name in message for name in names), message
    assert "Traceback" not in message and len(message.strip().splitlines()) <= 3, message
    assert folder_hashes(folder) == before
    assert not (tmp_path / "run" / "tables").exists()  # no chapter ran


def test_the_catalogue_is_long_and_covers_each_kind_of_input() -> None:
    kinds = [case.split(":")[0] for case in CATALOGUE]
    assert len(CATALOGUE) >= 30 and {kind: kinds.count(kind) >= 8 for kind in set(kinds)} == {
        "seed": True,
        "manifest": True,
        "parameter": True,
    }
