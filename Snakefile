# oncobench: synthetic precision-oncology benchmark releases.
# Entry point only; one .smk per stage under rules/, science in the `oncobench` package.
from snakemake.utils import min_version, validate

from oncobench.config import prepare_workflow_config

min_version("9.0")


configfile: "config/config.yaml"


prepare_workflow_config(config)  # one line naming a bad key; reads --config strings as YAML
validate(config, "workflow/schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/config.smk"
include: "rules/cohort.smk"


if config["model"] == "nsclc":

    include: "rules/nsclc.smk"

else:

    include: "rules/simulate.smk"
    include: "rules/counterfactuals.smk"
    include: "rules/evaluate.smk"


include: "rules/verify.smk"
include: "rules/report.smk"
include: "rules/track.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
