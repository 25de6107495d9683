rule draw_cohort:
    input:
        config=CONFIG_FILE,
    output:
        f"{R}/cohort/shard-{{shard}}.parquet",
    log:
        log_path("draw_cohort", "shard-{shard}"),
    benchmark:
        benchmark_path("draw_cohort", "shard-{shard}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/oncobench.yaml"
    shell:
        "oncobench cohort --config {input.config} --threads {threads} --shard {wildcards.shard} --out {output} > {log} 2>&1"
