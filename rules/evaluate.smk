rule evaluate_models:
    input:
        config=CONFIG_FILE,
        cohort=cohort_shards,
        trajectories=trajectory_shards,
        regimens=regimen_shards,
        onestep=onestep_shards,
        taustep=taustep_shards,
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
        " --trajectories {input.trajectories} --regimens {input.regimens} --onestep {input.onestep}"
        " --taustep {input.taustep} --out {output} > {log} 2>&1"
