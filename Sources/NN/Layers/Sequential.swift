// nn.Sequential: children applied in order; backward runs them in reverse (chain rule).

public final class Sequential: Layer {
    public let name: String
    public private(set) var children: [Layer]
    private let ctx: ModelContext

    public init(_ ctx: ModelContext, name: String, _ children: [Layer]) {
        self.ctx = ctx; self.name = name; self.children = children
        fuseBatchNorms(children)
    }

    public var leaves: [Layer] { children.flatMap { $0.leaves } }
    public func outputShape(_ s: [Int]) -> [Int] { children.reduce(s) { $1.outputShape($0) } }

    public func forward(_ x: Tensor, training: Bool) -> Tensor {
        var h = x
        for c in children { h = ctx.forward(c, h, training: training) }
        return h
    }

    /// Each child's input gradient goes back to the pool once the child before it has consumed
    /// it, and is donated to that child. `dy` itself is the caller's, unless it was donated to us.
    public func backward(_ dy: Tensor) -> Tensor {
        let dyIsOurs = ctx.gradients.isDonated(dy)
        var g = dy
        for c in children.reversed() {
            let ours = g !== dy || dyIsOurs
            if ours { ctx.gradients.donate(g) }
            let next = ctx.backward(c, g)
            if ours && g !== next { ctx.gradients.give(g) }
            g = next
        }
        return g
    }
}
