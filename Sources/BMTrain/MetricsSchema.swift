/// Units and a one-line description of every dataset a run writes to metrics.h5,
/// stored as the dataset's `units` and `description` attributes (h5py: `ds.attrs`),
/// the same words as docs/metrics.md. A layer's statistics live under
/// `router/layer_{i}/NAME` and are described by NAME.
public enum MetricsSchema {
    public static let datasets: [String: (units: String, description: String)] = [
        "train/step": ("steps", "training steps done when the row was logged (as eval/step)"),
        "train/tokens": ("tokens", "training tokens seen after the step"),
        "train/loss": ("nats/token", "training cross-entropy of the step"),
        "train/lr": ("1", "learning rate the step used"),
        "train/grad_norm": ("1", "global gradient L2 norm before clipping"),
        "train/tokens_per_s": ("tokens/s", "throughput of the training steps since the previous row (evaluation and checkpoints excluded)"),
        "train/flops": ("FLOPs", "training FLOPs so far (tokens × flops_per_token)"),
        "train/aux_loss": ("nats/token", "sum of the routers' aux and z losses in the step"),
        "eval/step": ("steps", "training steps done when the evaluation ran"),
        "eval/loss": ("nats/token", "mean validation cross-entropy over eval_batches fixed batches"),
        "eval/metric": ("see the group's metric_name", "bits per byte for text, accuracy for synthetic tasks, NaN otherwise"),
        "router/step": ("steps", "training steps done when the row was logged (as train/step)"),
        "router/load": ("tokens", "tokens routed to each expert in the step (after dropping), one column per expert"),
        "router/load_max_over_mean": ("1", "load imbalance: the busiest expert's tokens over the mean"),
        "router/cv": ("1", "load imbalance: coefficient of variation of the experts' tokens"),
        "router/entropy": ("nats", "mean entropy of the router's softmax over experts"),
        "router/dropped": ("1", "fraction of assignments dropped by a capacity limit"),
        "router/aux_loss": ("nats/token", "the router's load-balancing loss (scaled by its α)"),
        "router/z_loss": ("nats/token", "the router's z-loss (scaled by its β)"),
        "router/sinkhorn_iters": ("iterations", "Sinkhorn iterations of the step's routing call"),
        "router/sinkhorn_converged": ("0 or 1", "whether Sinkhorn met its tolerance"),
        "router/row_error": ("1", "final Sinkhorn row-marginal error (relative)"),
        "router/col_error": ("1", "final Sinkhorn column-marginal error (relative)"),
    ]

    /// (units, description) of a dataset path; a statistic nobody described says so.
    public static func describe(_ path: String) -> (units: String, description: String) {
        var key = path
        if path.hasPrefix("router/"), let name = path.split(separator: "/").last { key = "router/\(name)" }
        return datasets[key] ?? ("", "statistic '\(path.split(separator: "/").last ?? "")' of a layer (see its plugin's documentation)")
    }
}
