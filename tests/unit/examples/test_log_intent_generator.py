"""The log-intent demo data: reproducible from its generator, and an honest generalization test."""

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
    return {s: gen.generate_split(s, n) for s, n in (("train", gen.DEFAULT_TRAIN), ("eval", gen.DEFAULT_EVAL))}


def test_committed_files_are_what_the_generator_writes(gen, splits):
    for split, records in splits.items():
        committed = (EXAMPLE / f"{split}.jsonl").read_text(encoding="utf-8")
        assert committed == gen.to_jsonl(records), f"{split}.jsonl differs from `python generate.py` output"


def test_generator_is_deterministic_and_seed_dependent(gen, tmp_path):
    gen.main(["--out", str(tmp_path), "--train", "50", "--eval", "20", "--seed", "7"])
    again = gen.to_jsonl(gen.generate_split("train", 50, 7))
    assert (tmp_path / "train.jsonl").read_text() == again
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


def test_train_and_eval_share_no_template_and_no_line(splits, gen):
    train_t = {r["template"] for r in splits["train"]}
    eval_t = {r["template"] for r in splits["eval"]}
    assert train_t and eval_t and not (train_t & eval_t)
    # The template bodies themselves differ, not just their ids ...
    bodies = collections.defaultdict(set)
    for t in gen.TEMPLATES:
        bodies[t.split].add(t.body)
    assert not (bodies["train"] & bodies["eval"])
    # ... and no eval message could have been produced by any training template.
    train_res = [gen.template_regex(t) for t in gen.TEMPLATES if t.split == "train"]
    leaks = [r["body"] for r in splits["eval"] if any(rx.fullmatch(r["body"]) for rx in train_res)]
    assert leaks == []
    assert not ({r["text"] for r in splits["train"]} & {r["text"] for r in splits["eval"]})


def test_template_regex_matches_what_the_template_renders(splits, gen):
    by_id = {t.id: t for t in gen.TEMPLATES}
    for r in splits["train"][:200] + splits["eval"][:100]:
        assert gen.template_regex(by_id[r["template"]]).fullmatch(r["body"])


def test_every_label_and_vendor_appears_in_both_splits_with_different_mixes(splits, gen):
    for split, records in splits.items():
        for label in gen.LABELS:
            vendors = {r["vendor"] for r in records if r["label"] == label}
            assert vendors == set(gen.VENDORS), (split, label, vendors)
    share = {s: collections.Counter(r["vendor"] for r in recs) for s, recs in splits.items()}
    # Training leans on IOS + Linux; evaluation on Junos, NX-OS and EOS.
    assert share["train"]["ios"] / 1000 > 2 * share["eval"]["ios"] / 300
    assert share["eval"]["junos"] / 300 > 1.5 * share["train"]["junos"] / 1000


def test_lines_look_like_their_vendor(splits):
    for r in splits["train"] + splits["eval"]:
        if r["vendor"] in ("ios", "nxos"):
            assert "%" in r["text"].split(r["body"])[0] + r["body"][:1], r["text"]
        if r["vendor"] == "linux" and r["template"].split("/")[3] == "kernel":
            assert " kernel: [" in r["text"]


def test_template_ids_are_unique(gen):
    ids = [t.id for t in gen.TEMPLATES]
    assert len(ids) == len(set(ids))


def test_the_manifest_is_a_valid_finetunejob_the_trainer_accepts():
    """finetunejob.yaml validates, and the TrainerConfig the operator builds from it reads the
    committed files (the PVC paths swapped for them, as benchmarks/log_intent_minilm.py does)."""
    import yaml

    from finetune_api.resource import FineTuneJobSpec
    from finetune_api.training import DatasetFormat, Method, TrainerConfig
    from finetune_operator.builders import trainer_config
    from finetune_trainer.classification import resolve_labels  # registers the text/label format
    from finetune_trainer.data import load_dataset_spec

    manifest = yaml.safe_load((EXAMPLE / "finetunejob.yaml").read_text())
    spec = FineTuneJobSpec.model_validate(manifest["spec"])
    assert spec.method is Method.CLASSIFICATION and spec.model.source == "builtin:minilm-l6"
    wire = trainer_config(spec, "default", manifest["metadata"]["name"]).to_wire()
    assert wire["dataset"]["source"].endswith("/log-intent/train.jsonl")
    wire["dataset"]["source"] = str(EXAMPLE / "train.jsonl")
    wire["dataset"]["validationSource"] = str(EXAMPLE / "eval.jsonl")
    cfg = TrainerConfig.model_validate(wire)
    data = load_dataset_spec(cfg.dataset, cfg.training.seed, {DatasetFormat.CLASSIFICATION})
    assert (data.report.train_records, data.report.validation_records, data.report.validation_overlap_removed) == (1000, 300, 0)
    assert resolve_labels(data, cfg.dataset.labels) == ["anomaly", "auth", "dhcp", "link-state", "routing"]
