"""The log-intent demo data: reproducible from its generator, and an honest generalization test
(eval and holdout lines come from templates, and holdout lines from vendors, that training never uses)."""

import collections
import importlib.util
import json
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "log-intent"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("log_intent_generate", EXAMPLE / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def splits(gen):
    return {s: gen.generate_split(s, gen.DEFAULT_SIZES[s]) for s in gen.SPLITS}


def test_committed_files_are_what_the_generator_writes(gen, splits):
    assert set(splits) == {"train", "eval", "holdout"}
    for split, records in splits.items():
        committed = (EXAMPLE / f"{split}.jsonl").read_text(encoding="utf-8")
        assert committed == gen.to_jsonl(records), f"{split}.jsonl differs from `python generate.py` output"


def test_generator_is_deterministic_and_seed_dependent(gen, tmp_path):
    gen.main(["--out", str(tmp_path), "--train", "50", "--eval", "20", "--holdout", "30", "--seed", "7"])
    again = gen.to_jsonl(gen.generate_split("train", 50, 7))
    assert (tmp_path / "train.jsonl").read_text() == again
    assert len((tmp_path / "holdout.jsonl").read_text().splitlines()) == 30
    assert gen.to_jsonl(gen.generate_split("train", 50, 8)) != again


def test_records_are_text_label_jsonl_balanced_over_five_labels(splits, gen):
    assert gen.LABELS == ("link-state", "dhcp", "auth", "routing", "anomaly")
    for split, records in splits.items():
        lines = (EXAMPLE / f"{split}.jsonl").read_text().splitlines()
        for line in lines:
            rec = json.loads(line)
            assert set(rec) == {"text", "label"} and rec["label"] in gen.LABELS and rec["text"]
        counts = collections.Counter(r["label"] for r in records)
        assert set(counts) == set(gen.LABELS)
        assert max(counts.values()) - min(counts.values()) <= 1
        texts = [r["text"] for r in records]
        assert len(set(texts)) == len(texts), f"duplicate lines in {split}"


def test_no_split_shares_a_template_or_a_line_with_training(splits, gen):
    train_t = {r["template"] for r in splits["train"]}
    bodies = collections.defaultdict(set)
    for t in gen.TEMPLATES:
        bodies[t.split].add(t.body)
    train_res = [gen.template_regex(t) for t in gen.TEMPLATES if t.split == "train"]
    for held_out in ("eval", "holdout"):
        held_t = {r["template"] for r in splits[held_out]}
        assert train_t and held_t and not (train_t & held_t)
        # The template bodies themselves differ, not just their ids ...
        assert not (bodies["train"] & bodies[held_out])
        # ... and no held-out message could have been produced by any training template.
        leaks = [r["body"] for r in splits[held_out] if any(rx.fullmatch(r["body"]) for rx in train_res)]
        assert leaks == [], held_out
        assert not ({r["text"] for r in splits["train"]} & {r["text"] for r in splits[held_out]})


def test_every_template_renders_and_its_regex_matches_what_it_renders(gen):
    import random

    r = random.Random(0)
    for t in gen.TEMPLATES:
        for _ in range(3):
            body = gen.render_body(t, r)  # a slot with no filler raises KeyError here
            assert gen.template_regex(t).fullmatch(body), (t.id, body)
            assert not gen.SLOT.search(body) and "[[" not in body, (t.id, body)
            assert body in gen.header_and_body(t, body, r) and body in gen.generic_header(t, body, r)


def test_vendors_per_split(splits, gen):
    """Eval: the first five vendors, each with every label. Train: those and more, at least twelve
    vendors per label. Holdout: three vendors that no train or eval template uses."""
    template_vendors = {s: {t.vendor for t in gen.TEMPLATES if t.split == s} for s in gen.SPLITS}
    assert template_vendors["holdout"] == set(gen.HOLDOUT_VENDORS)
    assert not (template_vendors["holdout"] & (template_vendors["train"] | template_vendors["eval"]))
    assert template_vendors["train"] == set(gen.EVAL_VENDORS) | set(gen.TRAIN_ONLY_VENDORS)
    for label in gen.LABELS:
        assert {r["vendor"] for r in splits["eval"] if r["label"] == label} == set(gen.EVAL_VENDORS)
        assert {r["vendor"] for r in splits["holdout"] if r["label"] == label} == set(gen.HOLDOUT_VENDORS)
        assert len({r["vendor"] for r in splits["train"] if r["label"] == label}) >= 12, label
    share = {s: collections.Counter(r["vendor"] for r in recs) for s, recs in splits.items()}
    # Evaluation leans on Junos, NX-OS and EOS, which training has least of.
    assert share["eval"]["junos"] / len(splits["eval"]) > 2 * share["train"]["junos"] / len(splits["train"])


def test_a_quarter_of_training_lines_have_a_generic_header_and_no_other_split_has(splits, gen):
    generic = sum(r["header"] == "generic" for r in splits["train"]) / len(splits["train"])
    assert abs(generic - gen.TRAIN_GENERIC_HEADER) < 0.05
    assert all(r["header"] == "vendor" for s in ("eval", "holdout") for r in splits[s])


def test_lines_look_like_their_vendor(splits):
    for r in splits["train"] + splits["eval"] + splits["holdout"]:
        if r["header"] != "vendor":
            continue
        if r["vendor"] in ("ios", "nxos"):
            assert "%" in r["text"].split(r["body"])[0] + r["body"][:1], r["text"]
        if r["vendor"] == "linux" and r["template"].split("/")[3] == "kernel":
            assert " kernel: [" in r["text"]
        if r["vendor"] == "huawei":
            assert r["body"].startswith("%%01")
        if r["vendor"] == "panos":
            assert ",SYSTEM," + r["body"] + "," in r["text"]


def test_template_ids_are_unique(gen):
    ids = [t.id for t in gen.TEMPLATES]
    assert len(ids) == len(set(ids))


def test_the_manifest_is_a_valid_finetunejob_the_trainer_accepts():
    """finetunejob.yaml validates, and the TrainerConfig the operator builds from it reads the
    committed files (the PVC paths swapped for them, as benchmarks/log_intent_minilm.py does)."""
    import yaml

    from finetune_api.resource import FineTuneJobSpec
    from finetune_api.runconfig import trainer_config
    from finetune_api.training import DatasetFormat, Method, TrainerConfig
    from finetune_trainer.classification import resolve_labels  # registers the text/label format
    from finetune_trainer.data import load_dataset_spec

    manifest = yaml.safe_load((EXAMPLE / "finetunejob.yaml").read_text())
    spec = FineTuneJobSpec.model_validate(manifest["spec"])
    assert spec.method is Method.CLASSIFICATION and spec.model.source == "builtin:minilm-l6"
    wire = trainer_config(spec, "default", manifest["metadata"]["name"], uid="test-uid").to_wire()
    assert wire["dataset"]["source"].endswith("/log-intent/train.jsonl")
    wire["dataset"]["source"] = str(EXAMPLE / "train.jsonl")
    wire["dataset"]["validationSource"] = str(EXAMPLE / "eval.jsonl")
    cfg = TrainerConfig.model_validate(wire)
    data = load_dataset_spec(cfg.dataset, cfg.training.seed, {DatasetFormat.CLASSIFICATION})
    sizes = {s: len((EXAMPLE / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "eval")}
    assert (data.report.train_records, data.report.validation_records, data.report.validation_overlap_removed) == (
        sizes["train"],
        sizes["eval"],
        0,
    )
    assert resolve_labels(data, cfg.dataset.labels) == ["anomaly", "auth", "dhcp", "link-state", "routing"]
