// The bottleneck block of He et al. (ResNet-50): 1x1 reduce -> 3x3 (stride) -> 1x1 expand (x4),
// each followed by BN, with ReLU after the first two; the sum with the shortcut is followed by ReLU
// (ResidualBlock). Shortcut: identity, or the projection `downsample` = 1x1 conv (stride) + BN
// (option B of the paper, torchvision's names). Convs keep their bias, as in the seed's blocks.

extension ResidualBlock {
    public static let bottleneckExpansion = 4

    public static func bottleneck(_ ctx: ModelContext, name: String, inChannels: Int, midChannels: Int,
                                  stride: Int = 1) -> ResidualBlock {
        let outChannels = midChannels * bottleneckExpansion
        var downsample: Layer? = nil
        if stride != 1 || inChannels != outChannels {   // declared first, see ResidualBlock.basic
            let ds = joinName(name, "downsample")
            downsample = Sequential(ctx, name: ds, [
                Conv2D(ctx, name: joinName(ds, "0"), inChannels: inChannels, outChannels: outChannels,
                       kernel: 1, stride: stride),
                BatchNorm2D(ctx, name: joinName(ds, "1"), channels: outChannels)])
        }
        let main: [Layer] = [
            Conv2D(ctx, name: joinName(name, "conv1"), inChannels: inChannels, outChannels: midChannels, kernel: 1),
            BatchNorm2D(ctx, name: joinName(name, "bn1"), channels: midChannels),
            ReLU(name: joinName(name, "relu1"), inPlace: true),
            Conv2D(ctx, name: joinName(name, "conv2"), inChannels: midChannels, outChannels: midChannels,
                   kernel: 3, stride: stride, padding: 1),
            BatchNorm2D(ctx, name: joinName(name, "bn2"), channels: midChannels),
            ReLU(name: joinName(name, "relu2"), inPlace: true),
            Conv2D(ctx, name: joinName(name, "conv3"), inChannels: midChannels, outChannels: outChannels, kernel: 1),
            BatchNorm2D(ctx, name: joinName(name, "bn3"), channels: outChannels),
        ]
        return ResidualBlock(ctx, name: name, main: main, shortcut: downsample)
    }
}
