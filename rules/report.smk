rule write_summary:
    input:
        unpack(model_extras),
        config=CONFIG_FILE,
        cohort=cohort_shards,
        trajectories=expand(f"{R}/trajectories/gamma-{{gamma}}/shard-0.parquet", gamma=GAMMAS),
        regimens=regimen_shards,
        verification=verification_dirs,
        metrics=metric_files,
    output:
        summary=report(
            f"{R}/summary/summary.md",
            caption="../workflow/report/summary.rst",
            category="Summary",
        ),
        trajectories=report(
            f"{R}/summary/trajectories_by_treatment.png",
            caption="../workflow/report/trajectories.rst",
            category="Summary",
        ),
    params:
        results=results_root,
    log:
        log_path("write_summary"),
    benchmark:
        benchmark_path("write_summary")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../envs/oncobench.yaml"
    shell:
        "oncobench report --config {input.config} --threads {threads} --results-dir {params.results} --out {output.summary}"
        " --out-figure {output.trajectories} > {log} 2>&1"
