# Rules of the precision-oncology NSCLC model (config `model: nsclc`); the geng2017 model's
# simulate, counterfactual, verify and evaluate rules live in their own files.


rule simulate_trajectories:
    input:
        config=CONFIG_FILE,
        cohort=f"{R}/cohort/shard-{{shard}}.parquet",
    output:
        trajectories=f"{R}/trajectories/gamma-{{gamma}}/shard-{{shard}}.parquet",
        outcomes=f"{R}/factual/gamma-{{gamma}}/shard-{{shard}}.parquet",
    log:
        log_path("simulate_trajectories", "gamma-{gamma}/shard-{shard}"),
    benchmark:
        benchmark_path("simulate_trajectories", "gamma-{gamma}/shard-{shard}")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    conda:
        "../envs/oncobench.yaml"
    shell:
        "oncobench simulate --config {input.config} --threads {threads} --cohort {input.cohort} --gamma {wildcards.gamma}"
        " --out {output.trajectories} --out-outcomes {output.outcomes} > {log} 2>&1"


rule simulate_counterfactual_regimens:
    input:
        config=CONFIG_FILE,
        cohort=f"{R}/cohort/shard-{{shard}}.parquet",
    output:
        f"{R}/counterfactuals/regimens/shard-{{shard}}.parquet",
    log:
        log_path("simulate_counterfactual_regimens", "shard-{shard}"),
    benchmark:
        benchmark_path("simulate_counterfactual_regimens", "shard-{shard}")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    conda:
        "../envs/oncobench.yaml"
    shell:
        "oncobench counterfactuals --config {input.config} --threads {threads} --cohort {input.cohort} --out {output} > {log} 2>&1"


rule evaluate_models:
    input:
        config=CONFIG_FILE,
        cohort=cohort_shards,
        regimens=regimen_shards,
        factual=factual_shards,
    output:
        f"{R}/metrics/gamma-{{gamma}}.parquet",
    log:
        log_path("evaluate_models", "gamma-{gamma}"),
    benchmark:
        benchmark_path("evaluate_models", "gamma-{gamma}")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/oncobench.yaml"
    shell:
        "oncobench evaluate --config {input.config} --threads {threads} --gamma {wildcards.gamma} --cohort {input.cohort}"
        " --regimens {input.regimens} --factual {input.factual} --out {output} > {log} 2>&1"


rule run_trials:
    input:
        config=CONFIG_FILE,
    output:
        patients=f"{R}/trials/patients.parquet",
        summary=f"{R}/trials/summary.parquet",
        figures=report(
            directory(f"{R}/trials/figures"),
            patterns=["{trial}.png"],
            caption="../workflow/report/trials.rst",
            category="Virtual trials",
        ),
    log:
        log_path("run_trials"),
    benchmark:
        benchmark_path("run_trials")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    conda:
        "../envs/oncobench.yaml"
    shell:
        "oncobench trials --config {input.config} --threads {threads} --out-patients {output.patients}"
        " --out-summary {output.summary} --out-figures {output.figures} > {log} 2>&1"
