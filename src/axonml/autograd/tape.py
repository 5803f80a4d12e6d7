"""TensorFlow-style GradientTape on axonml's engine."""
