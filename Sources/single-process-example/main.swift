// The library without MPI or the CLI: a narrow ResNet-18 trained for a few SGD steps in one
// process, on Fashion-MNIST (synthetic images when it is not installed).
//   swift run -c release single-process-example
import NN
import Data
import Training

let train = (try? loadDataset(kind: .fashionMNIST, root: "", split: .train))
    ?? (try! loadDataset(kind: .synthetic, root: "", split: .train, syntheticCount: 2048))
let loader = BatchLoader(dataset: train, transform: TransformConfig(normalize: (mean: [0.286], std: [0.353])))
Parallel.setWorkers(2)                                            // worker threads for the layers
let model = ResNet(ResNetSpec(depth: 18, inChannels: 1, numClasses: 10, width: 16), seed: 1)
let params = model.params                                     // all parameters in one flat buffer
let sgd = SGD(count: params.totalCount, momentum: 0.9, weightDecay: 5e-4, nesterov: false)

let batch = 64
let x = Tensor(shape: [batch, 1, train.height, train.width])
var labels = [Int32](repeating: 0, count: batch)
for step in 0..<30 {
    let indices = (0..<batch).map { (step * batch + $0) % train.count }
    let result = labels.withUnsafeMutableBufferPointer { l -> SoftmaxCrossEntropy.Result in
        loader.fill(indices: indices, x: x, labels: l.baseAddress!, augment: false, seed: 1, epoch: 0)
        params.zeroGrad()
        return model.trainStep(x, labels: l.baseAddress!, normalizer: batch)   // forward, loss, backward
    }
    sgd.step(params: params.valueBuffer.baseAddress!, grads: params.gradBuffer.baseAddress!,
             count: params.totalCount, lr: 0.05)
    print("step \(step): loss \(result.loss), accuracy \(Double(result.correct) / Double(batch))")
}
