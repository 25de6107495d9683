rule verify_simulator:
    input:
        config=CONFIG_FILE,
        cohort=cohort_shards,
        trajectories=trajectory_shards,
    output:
        checks=f"{R}/verification/gamma-{{gamma}}/checks.parquet",
        predictions=f"{R}/verification/gamma-{{gamma}}/predictions.parquet",
        verdict=f"{R}/verification/gamma-{{gamma}}/verdict.parquet",
        recovery=report(
            f"{R}/verification/gamma-{{gamma}}/recovery.png",
            caption="../workflow/report/recovery.rst",
            category="Verification",
            labels={"figure": "parameter recovery", "gamma": "{gamma}"},
        ),
    log:
        log_path("verify_simulator", "gamma-{gamma}"),
    benchmark:
        benchmark_path("verify_simulator", "gamma-{gamma}")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    conda:
        "../envs/oncobench.yaml"
    shell:
        "oncobench verify --config {input.config} --threads {threads} --gamma {wildcards.gamma} --cohort {input.cohort}"
        " --trajectories {input.trajectories} --out-checks {output.checks} --out-predictions {output.predictions}"
        " --out-verdict {output.verdict} --out-figure {output.recovery} > {log} 2>&1"
