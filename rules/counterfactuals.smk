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


rule build_counterfactual_test_sets:
    input:
        config=CONFIG_FILE,
        cohort=f"{R}/cohort/shard-{{shard}}.parquet",
    output:
        onestep=f"{R}/counterfactuals/gamma-{{gamma}}/onestep/shard-{{shard}}.parquet",
        taustep=f"{R}/counterfactuals/gamma-{{gamma}}/taustep/shard-{{shard}}.parquet",
    log:
        log_path("build_counterfactual_test_sets", "gamma-{gamma}/shard-{shard}"),
    benchmark:
        benchmark_path("build_counterfactual_test_sets", "gamma-{gamma}/shard-{shard}")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    conda:
        "../envs/oncobench.yaml"
    shell:
        "oncobench counterfactual-tests --config {input.config} --threads {threads} --cohort {input.cohort} --gamma {wildcards.gamma}"
        " --out-onestep {output.onestep} --out-taustep {output.taustep} > {log} 2>&1"
