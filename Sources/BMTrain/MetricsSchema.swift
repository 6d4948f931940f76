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
        "eval/loss": ("nats/token", "mean validation cross-entropy over eval_batches batches evenly spaced over the split (MoE: argmax routing, unless eval.routing is train)"),
        "eval/metric": ("see the group's metric_name", "bits per byte for text, accuracy for synthetic tasks, NaN otherwise"),
        "eval/tokens": ("tokens", "tokens the evaluation scored"),
        "eval/loss_argmax": ("nats/token", "validation cross-entropy with MoE layers routed by argmax (causal, as generation)"),
        "eval/loss_train": ("nats/token", "validation cross-entropy with MoE layers routed as in training (over each batch; not causal)"),
        "eval/metric_argmax": ("see the group's metric_name", "the metric under argmax routing"),
        "eval/metric_train": ("see the group's metric_name", "the metric under training's routing"),
        "eval/routing_agreement": ("1", "per MoE layer (the group's moe_layers): share of training routing's choices the argmax makes too"),
        "test/step": ("steps", "training steps done when the test split was scored (once, at the end)"),
        "test/loss": ("nats/token", "test-split cross-entropy (a study's final number; MoE: argmax routing unless eval.routing is train)"),
        "test/metric": ("see eval's metric_name", "the metric on the test split"),
        "test/tokens": ("tokens", "tokens the test evaluation scored"),
        "test/loss_argmax": ("nats/token", "test-split cross-entropy under argmax routing"),
        "test/loss_train": ("nats/token", "test-split cross-entropy under training's routing"),
        "test/metric_argmax": ("see eval's metric_name", "the test metric under argmax routing"),
        "test/metric_train": ("see eval's metric_name", "the test metric under training's routing"),
        "test/routing_agreement": ("1", "per MoE layer: share of training routing's choices the argmax makes too, on the test split"),
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
