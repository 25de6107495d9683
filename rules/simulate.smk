rule simulate_trajectories:
    input:
        config=CONFIG_FILE,
        cohort=f"{R}/cohort/shard-{{shard}}.parquet",
    output:
        f"{R}/trajectories/gamma-{{gamma}}/shard-{{shard}}.parquet",
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
        " --out {output} > {log} 2>&1"
