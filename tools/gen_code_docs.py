#!/usr/bin/env python3
"""Regenerates docs/codes/CODE.md from the table below and the error fixtures.

    python3 tools/gen_code_docs.py

Each doc's example is its fixture (tests/fixtures/err/CODE_*.mlp) without the
header; the test suite checks that every doc's example still reports its code.
"""
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = {
"E0001": ("syntax error", "The text does not follow the grammar of a `.mlp` file: a keyword, name, `=`, brace or value is missing or misspelt. The message says what was expected at that place.", "Nothing after a syntax error can be read reliably, so no other check of that file runs until it parses.", "Compare the declaration with its form in `docs/language.md`. A misspelt keyword gets a *did you mean* suggestion; a missing `}` is reported where the next declaration starts, naming the line of the `{` left open."),
"E0002": ("invalid literal", "A number that follows the grammar cannot be represented: an integer beyond 64 bits, or a float that overflows to infinity.", "Silently wrapping or rounding such a value would change the meaning of the pipeline.", "Use a value in range; integers are 64-bit, floats are finite 64-bit numbers."),
"E0003": ("duplicate name", "Two declarations (stages, plugins or partitions of one split) share a name.", "Names are the edges of the pipeline's graph: `transform prep = data` must mean exactly one stage. Names are unique across all files of a project.", "Rename one of the two declarations and update the stages that read it."),
"E0004": ("unknown stage", "A declaration reads a stage, or names a model, that is not declared anywhere in the project (or names a model where a data stage is needed).", "The input of every stage must exist before anything runs.", "Fix the name (the help lists near misses and the declared stages), or declare the missing stage."),
"E0005": ("dependency cycle", "Stages read each other in a loop, so none of them can run first.", "A pipeline is a directed acyclic graph; a cycle has no order of execution.", "Make one stage of the loop read an earlier stage instead."),
"E0007": ("unknown option", "An option (`name = value`) is not one the declaration accepts: a csv option, a split option, a `tune`, `deploy`, `monitor` or `plugin` option.", "A misspelt option would otherwise be ignored silently and its default used.", "Use one of the options listed in the help, or remove it."),
"E0008": ("invalid option value", "An option has a value of the wrong type or outside its range, for example `seed = \"abc\"` or a split ratio above 1.", "The runtime could only guess what was meant.", "Write a value of the form the message names."),
"E0101": ("unknown source format", "A `source` uses a format other than `csv`, `parquet` or `json` (newline-delimited).", "The runtime has no reader for it.", "Convert the data to one of the supported formats, or fix the spelling."),
"E0102": ("duplicate column", "A source declares the same column name twice.", "Each column of a frame has one name; two declarations would disagree on its type.", "Remove the duplicate, or map a second header to another name with `as \"Header\"`."),
"E0103": ("invalid type", "A column type is malformed: levels on a type other than `category`, a format on a type other than `date`/`datetime`, or a date format with no or an unknown `%` field.", "The runtime parses every value with this type; a bad format would reject every row.", "Use strftime fields such as `%Y-%m-%d`, and levels only on categories."),
"E0105": ("source without columns", "A `source` declares no columns.", "The declared columns are the contract the data must meet; an empty contract checks nothing and gives later stages nothing to read.", "Declare the columns the pipeline uses. `mlp infer FILE` prints a starting point from a sample of the file."),
"E0106": ("invalid category levels", "A `category[...]` lists no level, or lists one twice.", "Levels define the one-hot columns and the valid values; duplicates make both ambiguous.", "List each level once."),
"E0201": ("unknown column", "An expression, rule, step or model refers to a column that does not exist at that point of the pipeline: a typo, a column dropped or renamed upstream, a feature defined further down, or one of the columns of a one-hot group whose levels are not known before the data is read.", "The schema is carried through every stage, so a reference that cannot be resolved would fail at run time, possibly after hours of work upstream.", "Use one of the available columns the help lists (near misses come first). For one-hot columns, declare the levels (`category[\"a\", \"b\"]`) or a `values` check so the columns are known."),
"E0202": ("operator on the wrong types", "An operator is applied to types it does not accept: arithmetic on a category, string or date, `and`/`or` on numbers, a comparison between unrelated types.", "The result would be meaningless or fail at run time.", "Convert one side (`float(x)`, `int(x)`), derive a number first (`year(d)`, `days_between(a, b)`), or encode the category in a transform."),
"E0203": ("unknown function", "An expression calls a function the language does not have.", "There is no implementation to run.", "Use a function from the expression library in `docs/language.md`; the help lists near misses. For your own functions, write a Wasm plugin."),
"E0204": ("wrong number of arguments", "A function is called with too few or too many arguments.", "Each function has a fixed signature.", "Pass the number of arguments the message names."),
"E0205": ("argument of the wrong type", "A function receives a value of a type it does not accept, such as `day_of_week` on a number or `ln` on a string.", "The function cannot compute a value for it.", "Pass a value of the expected type, converting it first where that makes sense."),
"E0206": ("incompatible types", "The branches of an `if`, the arguments of `coalesce` or the items of a list have types with no common type.", "A column has one type; the runtime cannot store a string in some rows and a number in others.", "Make both branches the same type, for example by converting with `str(...)` or `float(...)`."),
"E0207": ("column already exists", "A `rename` would give a column the name of another column.", "Two columns cannot share a name.", "Choose another name, or drop the other column first."),
"E0208": ("unknown category level", "A category is compared with, or checked against, a value that is not one of its levels.", "The comparison can never be true, which is almost always a typo.", "Use one of the levels the help lists."),
"E0209": ("aggregate without `over`", "An aggregate such as `mean(x)` is used on its own in a feature.", "It would be computed over whatever batch is at hand: the whole training set in training, but one request row at serving, so the model would see different values for the same row (train/serve skew).", "Make it a lookup table fitted on `train`: `mean(x) over key`. For a global statistic use a transform step (`scale`, `impute`)."),
"E0210": ("condition is not a bool", "A `filter`, `expect` or `if` condition is not a boolean expression.", "A row is kept or rejected by a true/false decision.", "Compare the value (`x > 0`) or test it (`is_null(x)`)."),
"E0211": ("invalid `over`", "`over` follows something other than an aggregate call, is used outside `features`, nests aggregates, or groups by a column that does not form groups (a float).", "An `over` lookup table is fitted on `train` and joined at serving by its keys; float keys would almost never match.", "Write `AGG(column) over KEY` in a features block, with a category, string, bool, int or date key."),
"E0212": ("date literal not in the column's format", "A string compared with a date or datetime column (in a `range` rule or a comparison such as `sold_at > \"2020-01-01\"`) does not parse in the format the column declares.", "The runtime parses the string with the column's format; a string that does not parse becomes null, every comparison with it is null, and the rule or feature silently tests nothing.", "Write the date the way the column's values are written, for example `\"2020/01/01\"` for a column declared `date \"%Y/%m/%d\"`."),
"E0301": ("rule on the wrong type", "A check rule is applied to a column of a type it cannot check: `range` on a category, `matches` on a number, `values` with values of another type.", "The rule could never pass or fail meaningfully.", "Apply the rule to a column of the right type, or check a derived feature."),
"E0302": ("invalid regular expression", "The pattern of a `matches` rule does not compile.", "It would fail on the first row.", "Fix the pattern; the help shows the regex engine's message."),
"E0303": ("rate out of range", "A `null_rate` rule or an `error_rate` gate has a threshold outside 0..1.", "Rates are shares of rows; 5 means 500%.", "Write the share as a fraction: 0.05 for 5%."),
"E0304": ("two checks on one stage", "A stage has two `check` blocks.", "Checks on a stage form one gate in the plan; two blocks would make their order ambiguous.", "Merge the rules into one block."),
"E0305": ("empty range", "A range's low end is above its high end (`range sqft 50000..100`).", "No value could satisfy it.", "Write the low end first. Either end may be left open: `..100`, `0..`."),
"E0401": ("split without `train`", "A split declares no `train` partition (or a pre-split column whose declared levels do not include `train`).", "Every fitted step and model learns from `train` and only from `train`.", "Name the training partition `train`: `train = 0.8  test = 0.2`."),
"E0402": ("ratios do not sum to 1", "The partition ratios of a split add up to more or less than 1.", "Every row belongs to exactly one partition.", "Adjust the ratios so they add up to 1."),
"E0403": ("conflicting split options", "Two ways of assigning rows are combined: `key` with `order`, `key` with `stratify`, `stratify` with `order`, or `column` with ratios.", "Each decides the partition of a row on its own; together they contradict each other.", "Choose one."),
"E0404": ("split option on the wrong column type", "`key` or `stratify` names a column that does not form groups (a float), `order` a column that cannot be ordered in time (a string), or `column` a column that is not a category or string.", "The assignment would be meaningless.", "Name a column of the type the message says."),
"E0405": ("partition column clash", "A ratio split adds a column named `partition`, but the input already has one.", "The split would overwrite it.", "Rename the input's column, or use `column = partition` if it already names each row's partition."),
"E0406": ("second split", "A split reads data that is already split.", "Rows would be assigned twice and `train` would mean two different things.", "Declare all partitions (`train`, `valid`, `test`) in one split."),
"E0501": ("step on the wrong type", "A transform step is applied to a column it cannot handle: `scale` or `impute ... with median` on a non-numeric column, `encode` on a float or date.", "The step has no meaning for that type.", "Apply the step to columns of the right type; bucket a float before encoding it."),
"E0502": ("fitted step before the split", "A step that learns parameters from the data (`impute` with mean/median/mode, `scale`, `bucket`, `encode` without declared levels, an `over` feature) runs on a stage that is not downstream of a split.", "It would learn from the test rows too, so the test score would no longer measure performance on unseen data (leakage).", "Move the split before this stage. Steps with fixed parameters (`impute ... with 0`, `clip`, `encode` with declared levels) may stay before it."),
"E0503": ("impute value of the wrong type", "`impute ... with VALUE` fills a column with a literal of another type.", "The column's type would change from row to row.", "Use a literal of the column's type."),
"E0504": ("encoded column name clash", "One-hot encoding would add a column (`color_red`) that already exists.", "Two columns cannot share a name.", "Rename or drop the existing column first."),
"E0505": ("unknown step method", "A step names a method it does not have (`scale x with zscore`).", "There is no implementation to run.", "Use one of the methods listed in the help."),
"E0506": ("partition column edited", "A step drops, renames, scales, encodes, buckets, imputes or replaces the split's partition column.", "Every stage after the split needs it to tell `train` from the other partitions.", "Leave it alone; models never read it."),
"E0507": ("too few buckets", "`bucket COL into N quantiles` with N below 2.", "One bucket carries no information.", "Use 2 or more buckets."),
"E0601": ("plugin not loaded", "A `plugin` declaration names a `.wasm` file that does not exist or cannot be read.", "Its signatures are needed to check every call, before any data is read.", "Build the plugin, or fix the path (relative to the `.mlp` file)."),
"E0602": ("unknown plugin function", "A call names a function the plugin does not export.", "There is nothing to call.", "Use one of the functions the help lists."),
"E0603": ("wrong number of plugin arguments", "A plugin function is called with a different number of arguments than its signature declares.", "The plugin reads exactly the columns its signature names.", "Pass the arguments the signature in the help lists."),
"E0604": ("plugin argument of the wrong type", "A plugin function receives a column of a type its signature does not accept.", "Values would be reinterpreted silently (a classic plugin-system failure); mlp rejects the call instead.", "Pass a column of the declared type, converting it first where that makes sense. Categories arrive as `str`."),
"E0605": ("plugin signatures missing or malformed", "The module has no `mlp:signatures` custom section, or its content does not parse.", "Calls cannot be type-checked without running the plugin, and mlp never runs a plugin to learn its types.", "Build the plugin with the mlp plugin SDK, whose export macro writes the signatures."),
"E0606": ("unsupported plugin ABI", "The module declares a plugin ABI version this mlp does not speak.", "The host and the guest would disagree on how values are passed.", "Rebuild the plugin with the SDK matching this mlp, or upgrade mlp."),
"E0607": ("unknown plugin", "A call names a plugin that is not declared.", "There is no module to call.", "Declare it with `plugin NAME = \"path.wasm\"`, or fix the name."),
"E0701": ("unknown algorithm", "A model names an algorithm mlp does not have.", "There is nothing to train.", "Use one of the algorithms the help lists (see `docs/language.md`)."),
"E0702": ("unknown parameter", "A model sets a parameter its algorithm does not have.", "A misspelt parameter would otherwise be ignored and its default used.", "Use one of the parameters the help lists."),
"E0703": ("parameter out of range", "A parameter has the wrong type or lies outside its valid range (`alpha = -1`).", "The solver would fail or silently do something else.", "Use a value in the range the message names. Parameters follow scikit-learn's names and meanings."),
"E0704": ("non-numeric model input", "A column that is still a `category`, `str`, `date` or `datetime` reaches a model.", "Models read numbers; a category has no order or magnitude a model could use as is.", "Encode it in a transform (`encode city with onehot`), derive a number from it (`year(sold_at)`), or exclude it."),
"E0705": ("nullable model input", "A column that may hold nulls reaches a model as an input or as its target. Arithmetic on a nullable column is nullable too.", "Most learners cannot handle missing values; rows would be dropped or filled silently, differently in training and at serving.", "Impute it in a transform, use `coalesce(x, 0)` in the feature, or for a target drop the rows: `filter not is_null(y)`."),
"E0706": ("target used as a feature", "The model's target is listed among its `features`.", "A model that reads its own answer learns nothing it can use at serving.", "Remove the target from `features`."),
"E0707": ("target leakage", "A feature reaching the model is computed from the target (its lineage reads the target column).", "The target is absent at serving, and a feature derived from it inflates test scores: the model looks excellent and fails in production.", "Remove the feature or exclude it from the model."),
"E0708": ("ambiguous task", "The model's target is an `int` (or another type that does not decide the task), so mlp cannot tell regression from classification.", "The two tasks use different losses and metrics.", "Say which: `task = regression` or `task = classification`."),
"E0709": ("algorithm does not support the task", "The algorithm cannot learn the model's task, for example a decision tree (a classifier) on a float target.", "There is no implementation of that algorithm for that task.", "Use an algorithm listed in the help for the task, or change the target."),
"E0710": ("model before the split", "A model reads a stage that is not downstream of a split.", "Models learn on `train` only; without a split there is no held-out data to evaluate on.", "Declare a split upstream of the model."),
"E0711": ("search space without `tune`", "A parameter is given as a list of values, but the model has no `tune` block.", "A list is a search space; without a tuning procedure there is no way to choose among the values.", "Add `tune { cv = 5  metric = ... }`, or give one value."),
"W0712": ("`tune` with nothing to search (warning)", "A model has a `tune` block but no parameter is a list.", "Cross-validation would run for a single combination and choose nothing.", "Give a parameter a list of values, or remove the `tune` block."),
"E0713": ("feature reads the partition column", "A feature reaching a model is computed from the split's partition column.", "The partition is an artefact of training; it does not exist at serving.", "Remove the feature or exclude it."),
"E0714": ("model without a target", "A model has no `target = COLUMN`.", "There is nothing to learn.", "Add the target."),
"E0715": ("model without inputs", "After `features` and `exclude`, no input column is left.", "There is nothing to learn from.", "Check `features` and `exclude`."),
"E0802": ("metric does not fit the task", "A metric, gate or tuning metric does not fit the model's task: `rmse` on a classifier, `accuracy` on a regression, `roc_auc` on a multiclass target.", "The metric is undefined for that kind of prediction.", "Use a metric for the task; the help lists them."),
"E0803": ("threshold outside the metric's range", "A gate's threshold lies outside the values its metric can take (`require r2 >= 80`, `require accuracy > 1.5`).", "The gate could never pass (or never fail), which is almost always a percentage written as a whole number.", "Write shares as fractions: `r2 >= 0.8`."),
"E0804": ("unknown partition", "An `evaluate` names a partition the model's split does not have.", "There are no rows to score.", "Use one of the partitions the help lists."),
"E0805": ("slice by a column that does not form groups", "A fairness `slice` groups by a float column.", "Every row would be its own group.", "Slice by a category, string, bool or int column; bucket a float in a transform first."),
"E0806": ("unknown metric", "A metric name is not one mlp computes.", "There is nothing to compute.", "Use one of the metrics the help lists."),
"E0807": ("unsuitable drift statistic", "A drift statistic does not fit its column (`ks` on a category, `chi2` on a number), asks for a p-value it does not have, or does not exist.", "The statistic is undefined for that kind of data.", "For numbers use `psi`, `ks`, `wasserstein` or `js`; for categories `chi2`, `psi` or `js`. Only `ks` and `chi2` have p-values."),
"E0808": ("duplicate deployment name", "Two `deploy` declarations register under the same name.", "A deployment name is one entry in the model registry; two models would overwrite each other's versions.", "Give each deployment its own name."),
"E0809": ("unknown slice aggregate", "A slice gate uses an aggregate other than `gap`, `ratio`, `min` or `max`, or one of those is used outside a `slice`.", "Slice aggregates summarise a metric across groups; outside a slice there are no groups.", "Use `gap(M)`, `ratio(M)`, `min(M)` or `max(M)` inside `slice COL { ... }`."),
"E0810": ("invalid latency gate", "A `latency` gate has a percentile that is not `p1`..`p99` or `p999`, or a value that is not a positive duration.", "The server measures latency in time units at given percentiles.", "Write `latency p99 < 20ms`."),
"W0801": ("deployed without gates (warning)", "A model is deployed but no `evaluate` of it has a `require` gate.", "Any model would be registered, however poor its scores; gates are what stop a regression from shipping.", "Add `evaluate MODEL on test { require ... }`."),
}

def main():
    # A code may have several fixtures; its doc shows the first by name.
    fixtures = {}
    for p in sorted((ROOT / 'tests/fixtures/err').glob('*.mlp')):
        fixtures.setdefault(p.name.split('_')[0], p)
    out = ROOT / 'docs/codes'
    out.mkdir(parents=True, exist_ok=True)
    for code, (title, what, why, fix) in DOCS.items():
        src = fixtures[code].read_text()
        body = '\n'.join(l for l in src.splitlines() if not l.startswith('# expect:'))
        lines = body.splitlines()
        intro = lines[0][2:] if lines and lines[0].startswith('# ') else ''
        example = '\n'.join(lines[1:] if intro else lines).strip('\n')
        doc = f"# {code}: {title}\n\n{what}\n\n## Why it is reported\n\n{why}\n\n## Example\n\n"
        if intro:
            doc += f"{intro[0].upper()}{intro[1:]}:\n\n"
        doc += f"```mlp\n{example}\n```\n\n`mlp check` reports `{code}` for it.\n\n## How to fix\n\n{fix}\n"
        (out / f"{code}.md").write_text(doc)
    print(f"wrote {len(DOCS)} docs")

if __name__ == '__main__':
    main()
