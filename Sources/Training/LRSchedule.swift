// Learning rate per step: optional linear warmup (from lr/warmup_steps up to lr), then
// constant, step (x gamma every step_epochs) or cosine (down to min_lr at the last step).

public struct LRSchedule: Sendable {
    /// The schedule family; its raw values are the accepted values of `schedule.kind`.
    public enum Kind: String, CaseIterable, Codable, Equatable, Sendable { case constant, step, cosine }
    public var kind: Kind
    public var baseLR: Double
    public var warmupSteps: Int
    public var stepsPerEpoch: Int
    public var totalSteps: Int
    public var stepEpochs: Int
    public var gamma: Double
    public var minLR: Double

    public init(kind: Kind, baseLR: Double, warmupEpochs: Double, stepsPerEpoch: Int, totalSteps: Int,
                stepEpochs: Int = 30, gamma: Double = 0.1, minLR: Double = 0) {
        self.kind = kind; self.baseLR = baseLR; self.stepsPerEpoch = max(stepsPerEpoch, 1)
        self.warmupSteps = Int((warmupEpochs * Double(max(stepsPerEpoch, 1))).rounded())
        self.totalSteps = max(totalSteps, 1); self.stepEpochs = max(stepEpochs, 1)
        self.gamma = gamma; self.minLR = minLR
    }

    /// The rate used for global step `step` (0-based).
    public func lr(at step: Int) -> Double {
        if step < warmupSteps { return baseLR * Double(step + 1) / Double(warmupSteps) }
        switch kind {
        case .constant:
            return baseLR
        case .step:
            let epoch = step / stepsPerEpoch
            var f = 1.0
            for _ in 0..<(epoch / stepEpochs) { f *= gamma }
            return baseLR * f
        case .cosine:
            let span = max(totalSteps - warmupSteps - 1, 1)
            let t = min(Double(step - warmupSteps) / Double(span), 1)
            return minLR + (baseLR - minLR) * (1 + cos(Double.pi * t)) / 2
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
