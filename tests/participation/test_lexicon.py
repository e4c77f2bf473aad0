"""crowdlens.annotate on hand-made cases with known answers, and on the real release."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdlens import participation as A
from crowdlens.participation import lexicon


# --- action-focused extraction ------------------------------------------------------------

def test_prefix_terms_match_token_starts_and_exact_terms_do_not():
    words = A.Dictionary.from_terms(["protest*", "join", "# a comment line"])
    assert words.terms == ["join", "protest*"]
    assert words.count(A.tokenize("Protesters joined the protest, join us")) == 3  # protesters, protest, join


def test_extraction_picks_the_densest_sentence_with_its_neighbours():
    text = ("I had a long day at work today. Nothing else happened at all. "
            "Join the protest and strike with us. We meet at noon by the station. Bring water.")
    window = A.extract_action_focused(text, ["protest*", "strike", "join"])
    assert window == "Nothing else happened at all. Join the protest and strike with us. We meet at noon by the station."


def test_extraction_at_the_edges_and_the_two_word_filter():
    assert A.extract_action_focused("Strike now! Then rest. Then sleep.", ["strike", "now"]) == "Strike now! Then rest."
    assert A.extract_action_focused("We should strike. It is cold.", ["strike"]) is None  # one match < 2
    assert A.extract_action_focused("We should strike. It is cold.", ["strike"], min_matches=1) == "We should strike. It is cold."


def test_a_tie_goes_to_the_earlier_sentence():
    text = "First line. Vote today. Filler here. Vote tomorrow. Last line."
    assert A.extract_action_focused(text, ["vote"]) == "First line. Vote today. Filler here."


def test_gold_selection_finds_the_sentence_behind_a_released_window():
    sentences, good = lexicon.gold_selection("A b. C d. E f. G h.", "C d. E f. G h.")
    assert sentences == ["A b.", "C d.", "E f.", "G h."] and good == {2}
    assert lexicon.gold_selection("A b. C d.", "Something else.") is None


def test_token_overlap():
    assert lexicon.token_overlap("a b c", "a b c") == 1.0
    assert lexicon.token_overlap("a b", "c d") == 0.0
    assert lexicon.token_overlap("a b c d", "a b") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_learning_recovers_a_planted_dictionary():
    rng = np.random.default_rng(0)
    filler = ["the weather is mild", "my cat sleeps a lot", "lunch was good", "traffic was slow today",
              "we watched a film", "the bus came late", "it rained again"]
    action = ["join the rally", "boycott the company", "sign the petition", "rally and boycott now"]
    originals, released = [], []
    for _ in range(120):
        sentences = [f"{f}." for f in rng.choice(filler, 5, replace=False)]
        k = int(rng.integers(0, 5))
        sentences[k] = f"Please {rng.choice(action)} and petition too."
        originals.append(" ".join(sentences))
        released.append(" ".join(sentences[max(0, k - 1): k + 2]))
    terms, history = A.learn_dictionary(originals, released, min_count=3, max_terms=10)
    assert A.Dictionary.from_terms(terms).matches("petition")  # the planted word (or its stem)
    assert not any(A.Dictionary.from_terms(terms).matches(w) for w in ["weather", "cat", "bus", "film"])
    assert history["reproduced"].iloc[-1] == 1.0
    evaluation = A.evaluate_extraction(pd.DataFrame({"OriginalText": originals, "ActionFocusedText": released}), terms)
    assert evaluation["exact"].all()


def test_shipped_dictionary_is_what_learning_produces(shared_data, tmp_path):
    terms, path = A.relearn_shipped_dictionary(tmp_path / "terms.txt")
    assert sorted(terms) == sorted(A.load_dictionary().terms)
    assert path.read_text() == lexicon.default_dictionary_path().read_text()


def test_shipped_dictionary_reproduces_the_released_test_windows(shared_data):
    from crowdlens.data import load_collective_action

    test = load_collective_action("test")
    evaluation = A.evaluate_extraction(test, A.load_dictionary())
    assert len(A.load_dictionary()) == 30
    assert evaluation["exact"].mean() >= 0.55  # measured 0.601
    assert evaluation["overlap"].mean() >= 0.85  # measured 0.891
    assert evaluation["sampled"].mean() >= 0.90  # measured 0.943


# --- simulated crowds, agreement, aggregation ---------------------------------------------

@pytest.fixture
def gold():
    labels = ["None"] * 60 + ["Problem-Solution"] * 20 + ["Call-to-action"] * 10 + ["Intention"] * 5 + ["Execution"] * 5
    return pd.Series(labels, index=[f"c{i}" for i in range(len(labels))])


def test_perfect_annotators_agree_perfectly_and_are_recovered(gold):
    crowd = A.simulate_crowd(gold, annotators_per_item=3, mean_accuracy=1.0, accuracy_spread=0.0, spammer_share=0.0)
    assert crowd.groupby("task")["worker"].nunique().eq(3).all()
    scores = A.agreement(crowd)
    assert scores["krippendorff_alpha"] == pytest.approx(1.0) and scores["fleiss_kappa"] == pytest.approx(1.0)
    for method, accuracy in A.aggregation_accuracy(crowd, gold).items():
        assert accuracy == 1.0, method


def test_agreement_matches_hand_computed_values():
    # two coders, four units: (a,a) (a,b) (b,b) (b,b)
    labels = pd.DataFrame({
        "task": [1, 1, 2, 2, 3, 3, 4, 4],
        "worker": ["x", "y"] * 4,
        "label": ["a", "a", "a", "b", "b", "b", "b", "b"],
    })
    scores = A.agreement(labels)
    assert scores["krippendorff_alpha"] == pytest.approx(1 - 0.25 / (30 / 56))  # 0.5333
    assert scores["fleiss_kappa"] == pytest.approx(0.21875 / 0.46875)  # 0.4667
    assert scores["pairwise_agreement"] == pytest.approx(0.75)


def test_agreement_is_undefined_with_one_rating_per_item(gold):
    single = A.simulate_crowd(gold, annotators_per_item=1)
    assert all(np.isnan(v) for v in A.agreement(single).values())
    assert A.aggregation_accuracy(single, gold, ["majority"])["majority"] > 0.5


def test_majority_tie_goes_to_the_higher_participation_level():
    labels = pd.DataFrame({"task": ["t"] * 4, "worker": list("abcd"),
                           "label": ["Intention", "Execution", "Intention", "Execution"]})
    assert A.aggregate(labels, "majority")["t"] == "Execution"
    labels["label"] = ["None", "Problem-Solution", "None", "Problem-Solution"]
    assert A.aggregate(labels, "majority")["t"] == "Problem-Solution"


def test_noise_lowers_agreement_and_spammers_are_planted(gold):
    clean = A.agreement(A.simulate_crowd(gold, 5, mean_accuracy=0.9, spammer_share=0.0, seed=1))
    noisy = A.agreement(A.simulate_crowd(gold, 5, mean_accuracy=0.6, spammer_share=0.3, seed=1))
    assert noisy["krippendorff_alpha"] < clean["krippendorff_alpha"]
    crowd = A.simulate_crowd(gold, 5, spammer_share=0.25, n_workers=40, seed=2)
    assert len(crowd.attrs["spammers"]) == 10
    again = A.simulate_crowd(gold, 5, spammer_share=0.25, n_workers=40, seed=2)
    pd.testing.assert_frame_equal(crowd, again)


def test_confusions_lean_to_the_neighbour():
    matrix = A.annotator_confusion(0.8, neighbour_share=0.5)
    assert np.allclose(matrix.sum(axis=1), 1.0)
    assert matrix.loc["Intention", "Execution"] == pytest.approx(0.1)
    assert matrix.loc["Intention", "None"] == pytest.approx(0.1 / 3)


def test_bad_crowd_parameters_are_refused(gold):
    with pytest.raises(ValueError, match="cannot exceed"):
        A.simulate_crowd(gold, annotators_per_item=50, n_workers=10)
    with pytest.raises(ValueError, match="not among"):
        A.simulate_crowd(pd.Series(["Maybe"]))
    with pytest.raises(ValueError, match="method must be"):
        A.aggregate(pd.DataFrame({"task": [1], "worker": ["a"], "label": ["None"]}), "vote")


def test_crowd_sweep_is_the_same_in_parallel(gold):
    """Each crowd carries its own seed: two processes give the rows one process gives,
    in the grid's order; more annotators per item make the aggregated label more accurate."""
    settings = dict(base={"mean_accuracy": 0.7}, methods=["majority", "dawid_skene"], repetitions=2, seed=3,
                    progress=False)
    serial = A.crowd_sweep(gold, "annotators_per_item", [1, 5], **settings)
    parallel = A.crowd_sweep(gold, "annotators_per_item", [1, 5], n_jobs=2, **settings)
    pd.testing.assert_frame_equal(serial, parallel)
    assert list(serial["annotators_per_item"]) == [1, 1, 5, 5] and list(serial["repetition"]) == [0, 1, 0, 1]
    means = serial.groupby("annotators_per_item")["majority"].mean()
    assert means[5] > means[1]
