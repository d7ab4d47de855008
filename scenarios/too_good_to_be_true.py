"""too_good_to_be_true — a held-out loss below what the language allows. No model can beat the
entropy floor (the true generator's own loss) on data it has not seen: a held-out loss under it
means the measurement sees what it should not. Every cause is the team's code (the model's
input window in `sim/models.py`; the target shift and the train/validation split in
`sim/data.py`), so config.json is the same for all of them; the code probe shows the functions
that ran.

Measured at this scale and left out: dropout left on at evaluation (the model in train mode)
costs the held-out loss only 0.05-0.11 of the way from the unigram baseline to the floor, while
healthy runs of the window MLP with dropout 0.4 end anywhere from 0.33 to 0.71 of the way: no
bar tells it apart from a healthy run.
"""
from ..sim.config import FIXED_REASONS
from ..sim.scenario import Cause, Change, Criterion, Fault, Fix, Scenario
from ..sim.tells import Tell, all_of, heldout_rows_in_training_set, none_of, summary_at_least, \
    summary_at_most

MODEL_CODE = "Vectorised the MLP's forward pass"
SPLIT_CODE = "Moved the train/validation split into the data module"
LOADER_CODE = "Refactored the data loader"

SCENARIO = Scenario(
    id="too_good_to_be_true",
    title="The held-out loss is too good to be true",
    difficulty="medium",
    tags=("evaluation", "data leakage", "validation split", "causal mask", "entropy floor"),
    story=(
        "Your team trains a small MLP language model (the last 3 tokens predict the next) on\n"
        "its data set of 96 sequences of the toy language: AdamW at lr 0.05, 80 steps of 32\n"
        "sequences. The language's entropy floor is 0.964 nats per token: no model can do\n"
        "better on text it has not seen. Last month's run ended around 1.3-1.6 on the held-out\n"
        "set. After a round of refactoring the held-out loss is suddenly far better than that,\n"
        "below the floor itself. Everyone is pleased except you. Find out why and fix the\n"
        "cause: a healthy run's held-out loss comes down, but never below the floor."),
    # Measured bare on seeds 0-4: healthy held-out loss 1.31-1.60 (0.57-0.77 of the way from the
    # unigram baseline to the floor); the held-out rows taken from the training set 0.75-0.86;
    # the window that sees the target 0.25-0.62 (distinct-2 of its text 0.43-0.94); targets not
    # shifted 0.000 (distinct-2 0.05: one token repeated); lr / 10 leaves every run above 2.16.
    base={"model": "mlp", "d_model": 32, "optimizer": "adamw", "lr": 0.05, "warmup_steps": 5,
          "schedule": "cosine", "batch_size": 32, "steps": 80, "train_sequences": 96,
          "eval_batch_size": 32, "gen_tokens": 20},
    causes=(
        Cause(
            id="window_sees_target",
            title="The MLP's input window is shifted one token ahead: it sees the token it "
                  "predicts",
            fault=Fault("the vectorised forward pass pads the window one token short on the "
                        "left and one token on the right, so each position's window ends at "
                        "the next token", config={"lm_window": "around_token"}),
            explanation=(
                "Each position must predict the next token from the tokens up to itself. The\n"
                "refactored window pads one token too few on the left and one on the right, so\n"
                "the window of position t holds t-1, t and t+1: the very token it predicts.\n"
                "It is the MLP's version of an off-by-one causal mask. Training and held-out\n"
                "losses fall far below the entropy floor (the model copies the answer). At\n"
                "generation there is no next token yet, only the zero padding, and the model\n"
                "never learnt to predict without it: the text is not the language."),
            tell="the held-out loss is far below the entropy floor though the held-out rows "
                 "are not in the training set, and the generated text breaks the grammar "
                 "(samples)",
            changes=(MODEL_CODE,),
            signal=Tell("plot loss, samples, code",
                        all_of(summary_at_most("eval_loss", 0.9141),
                               summary_at_least("distinct_2", 0.2),
                               none_of(heldout_rows_in_training_set))),
            hints=("Compare the held-out loss with the entropy floor (plot loss), then read "
                   "some generated text (samples).",
                   "If the model is that good, why is its text not? What can a position see "
                   "in training that it cannot see while generating (code)?")),
        Cause(
            id="targets_not_shifted",
            title="The targets are not shifted: each position is trained to predict its own "
                  "token",
            fault=Fault("the refactored data loader builds the targets from the inputs "
                        "instead of from the tokens one ahead",
                        config={"label_shift": "same_position"}),
            explanation=(
                "Position t must be trained to predict token t+1. The refactored loader takes\n"
                "the targets from the inputs themselves, so each position learns to repeat the\n"
                "token it was given, which sits in its own window: a copy task, solved to a loss\n"
                "near zero on any text, held-out or not. Generating, the model keeps repeating\n"
                "the last token of the prompt. Same family as an off-by-one causal mask: the\n"
                "model is scored on something it can see."),
            tell="the training and held-out losses fall to near zero and the generated text "
                 "repeats one token over and over (samples: distinct-2 near 0)",
            changes=(LOADER_CODE,),
            signal=Tell("samples, plot loss", summary_at_most("distinct_2", 0.2)),
            hints=("Compare the held-out loss with the entropy floor (plot loss), then read "
                   "some generated text (samples).",
                   "What is each position asked to predict, and is it something it already "
                   "sees? Look at one batch's inputs and targets (code).")),
        Cause(
            id="heldout_from_train_set",
            title="The held-out rows are taken from the training set",
            fault=Fault("the split moved into the data module takes the last 32 rows of the "
                        "data set as the held-out set, but the loader still trains on all 96",
                        config={"heldout_split": "dataset_tail"}),
            explanation=(
                "The split holds out the last 32 rows of the data set, but the loader was not\n"
                "told: it trains on all 96 rows, 27 epochs of them. The held-out loss is\n"
                "measured on rows the model has memorised, so it falls below the entropy\n"
                "floor: the model predicts which continuation these particular sequences\n"
                "took, not the language's odds. The text it writes is fine: the model is\n"
                "healthy; only the number is wrong (on truly unseen text it would be\n"
                "1.3-1.6). Leakage between train and validation is the first thing to rule\n"
                "out when a validation score is better than it can be."),
            tell="the held-out loss is below the entropy floor (about 0.2 under it) while the "
                 "generated text follows the grammar (samples); the split's code holds out "
                 "rows the loader still trains on",
            changes=(SPLIT_CODE,),
            signal=Tell("plot loss, samples, code", heldout_rows_in_training_set),
            hints=("Compare the held-out loss with the entropy floor (plot loss), then read "
                   "some generated text (samples).",
                   "The text is fine and the number impossible: which rows is the held-out "
                   "loss measured on, and has the model trained on them (code)?")),
    ),
    fixes=(
        Fix("window_up_to_token", "Pad the window with context - 1 tokens on the left only, "
            "so each position sees itself and the tokens before it",
            config={"lm_window": "ending_at_token"}),
        Fix("shift_targets", "Build the targets from the tokens one position ahead of the "
            "inputs", config={"label_shift": "one_ahead"}),
        Fix("separate_heldout", "Measure the held-out loss on sequences kept out of the "
            "training set", config={"heldout_split": "own_stream"}),
        Fix("lower_lr", "Divide the learning rate by 10 (less overfitting)", scale={"lr": 0.1}),
    ),
    # Held-out loss at least halfway from the unigram baseline (2.4647) to the entropy floor
    # (0.9641), never below the floor less 0.05, and grammatical text. Measured bare on seeds
    # 0-4: healthy 0.57-0.77 of the way with 99.7-100% grammatical transitions (the window that
    # sees the target 58-82%); lr / 10 on a healthy run below 0.16 of the way.
    criterion=Criterion(min_learnt=0.5, baselines=(0.96407, 2.46469), min_eval_loss=0.9141,
                        min_valid_rate=0.9),
    resolves={"window_sees_target": ("window_up_to_token",),
              "targets_not_shifted": ("shift_targets",),
              "heldout_from_train_set": ("separate_heldout",)},
    harms=("lower_lr",),
    generates_text=True,
    code=("lm_window", "label_shift", "heldout_split"),
    recipe=("lr", "warmup_steps", "schedule", "grad_clip", "optimizer", "weight_decay",
            "batch_size", "grad_accum_steps"),
    fixed=FIXED_REASONS,
    decoys=(
        Change("Evaluate every 20 steps", {"eval_every": 20}),
        Change("Warm up over 8 steps instead of 5", {"warmup_steps": 8}),
        Change(MODEL_CODE), Change(SPLIT_CODE), Change(LOADER_CODE),
    ),
    interview_question="Your validation loss is better than should be possible. What do you "
                       "check?",
    debrief=(
        "Interview answer: a loss below the data's entropy (or a validation score far above\n"
        "the state of the art) is a bug until proven otherwise. Check, in this order:\n"
        "- leakage: are validation rows (or near-duplicates) in the training set? Split before\n"
        "  any shuffling or augmentation, and split by document, not by line;\n"
        "- the model sees its target: a causal mask off by one, labels not shifted, or an\n"
        "  input window that includes the next token. The tell is generation: a model that\n"
        "  only scores well while it can see the answer writes garbage on its own;\n"
        "- the measurement itself: dropout left on at evaluation (model.eval() missing), or\n"
        "  a loss averaged over the wrong positions.\n"
        "Lowering the lr or training less only makes the impossible number less impossible."),
)
