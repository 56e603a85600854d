// A small checkpoint's contents, shared by CoordinatorTests (the file format) and TrainingTests
// (export, stored config): encode them with `Checkpoint.encode(_:metadata:)`.
import NN

public enum CheckpointSamples {
    /// A small checkpoint's contents: weights, a BN buffer, an int64 counter, momentum, and
    /// metadata with the characters real ones carry (YAML newlines, JSON quotes, non-ASCII).
    public static func tensors() -> [NamedTensor] {
        [
            NamedTensor(name: "0.0.weight", shape: [2, 1, 3, 3], values: (0..<18).map { Float($0) * 0.37 - 3 }),
            NamedTensor(name: "0.1.running_mean", shape: [2], values: [0.5, -0.0]),
            NamedTensor(name: "0.1.num_batches_tracked", shape: [], type: .int64, values: [12]),
            NamedTensor(name: "7.bias", shape: [3], values: [.infinity, Float(bitPattern: 0x0000_1234), -1.25]),
            NamedTensor(name: "optimizer.momentum.0.0.weight", shape: [2, 1, 3, 3], values: (0..<18).map { Float($0) * -0.01 }),
        ]
    }

    public static let metadata: [String: String] = [
        "format": "pt", "global_step": "12", "epoch": "0", "step_in_epoch": "12", "world_size": "2",
        "config": "model:\n  depth: 18\n  width: 8\ndata:\n  dataset: \"fashion-mnist\"\n",
        "metrics": "{\"kind\":\"step\",\"step\":1,\"loss\":2.3}\n{\"kind\":\"step\",\"step\":2,\"loss\":2.1}\n",
        "note": "tab\there, backslash \\ and unicode é ✓",
    ]
}
