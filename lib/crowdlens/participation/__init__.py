"""Participation in collective action (Pera & Aiello, ICWSM 2025).

The study's public API, by step of the book:

- labels: ``NONE``, ``LEVELS``, ``FIVE_CLASSES``, ``task_labels`` (``labels``);
- the action-focused window and its dictionary (``lexicon``);
- crowds of annotators, agreement and aggregation (``crowds``);
- zero-shot and fine-tuned language-model labels (``llm_labels``);
- classifiers, decision rules under prior shift, ``Experiment`` (``classifiers``);
- the saved classifier, ``load_classifier`` (``saved``);
- communities characterised by participation (``communities``).

Submodules import each other directly, never this package, so that importing one
of them never runs another's import in a circle.
"""

from crowdlens.participation import communities, llm_labels  # noqa: F401
from crowdlens.participation.classifiers import (  # noqa: F401
    DECISION_PROTOCOLS,
    DECISION_PREFERENCE,
    DECISIONS,
    PAPER_PROTOCOL,
    PRIOR_SHIFT_DECISIONS,
    PROTOCOLS,
    SMOKE_TEST_MAX_ROWS,
    TARGET_FOLDS_PROTOCOL,
    THRESHOLD_PROTOCOL,
    CentroidClassifier,
    DictionaryRule,
    EmbeddingLogReg,
    Evaluation,
    Experiment,
    HeldOut,
    SubsetSelection,
    TfidfLogReg,
    average_probabilities,
    best_none_threshold,
    check_protocol,
    crossfit_none_threshold,
    crossfit_probabilities,
    evaluate_probabilities,
    fold_assignment,
    held_out_probabilities,
    layered,
    layered_rows,
    predict_with_none_threshold,
    prior_shift_estimates,
    raw_rows,
    run_model,
    save_predictions,
    score,
    select_training_subset,
    train_prior,
)
from crowdlens.participation.crowds import (  # noqa: F401
    AGGREGATORS,
    aggregate,
    aggregation_accuracy,
    agreement,
    annotator_confusion,
    annotators_needed,
    crowd_sweep,
    examples,
    simulate_crowd,
)
from crowdlens.participation.labels import (  # noqa: F401
    DEFINITIONS,
    FIVE_CLASSES,
    LEVELS,
    NEIGHBOURS,
    NONE,
    PARTICIPATION,
    TASKS,
    task_labels,
)
from crowdlens.participation.lexicon import (  # noqa: F401
    Dictionary,
    evaluate_extraction,
    extract_action_focused,
    gold_selection,
    learn_dictionary,
    load_dictionary,
    relearn_shipped_dictionary,
    split_sentences,
    tokenize,
)
from crowdlens.participation.llm_labels import LLMAnnotator, llm_annotate  # noqa: F401
from crowdlens.participation.pretraining import DomainCorpus, domain_corpus, mlm_pretrain, pretraining_card  # noqa: F401
from crowdlens.participation.saved import (  # noqa: F401
    CARD_VERSION,
    SAVED_CLASSIFIERS,
    ParticipationClassifier,
    distil_classifier,
    load_classifier,
    train_default_classifier,
    with_test_threshold,
)

from crowdlens.core.moved import moved_module  # noqa: E402

# names that lived in the flat module crowdlens.participation (0.1) and moved to the core
__getattr__ = moved_module(__name__, ["crowdlens.core.metrics"])
