# Runner for rb> tasks: the Ruby twin of py_runner.py, same files and JSON contract (Digdag's runner.rb).
# Shipped next to the task, so it uses only the Ruby standard library (Ruby 2.7+).
#
# Usage: ruby runner.rb METHOD IN_JSON OUT_JSON [REQUIRE]
#   METHOD  "Klass.meth", "Mod::Klass.meth" (instance method if public, else singleton) or "meth"
#   REQUIRE a project file to load first, e.g. "tasks/my_workflow" (the working directory is on
#           $LOAD_PATH before it is required, so this works the same locally, in Docker and on ECS)
require 'json'

module Digdag
  class Env
    attr_reader :params, :subtask_config, :export_params, :store_params, :state_params

    def initialize(params)
      @params = params
      @subtask_config = {}
      @export_params = {}
      @store_params = {}
      @state_params = {}
    end

    def export(params = {}, **kwargs)
      merge_into('export', @export_params, params, kwargs)
    end

    def store(params = {}, **kwargs)
      merge_into('store', @store_params, params, kwargs)
    end

    def set_state(params = {}, **kwargs)
      merge_into('set_state', @state_params, params, kwargs)
    end

    def add_subtask(*_args, **_kwargs)
      raise NotImplementedError, 'Digdag.env.add_subtask is not supported on Airflow: tasks cannot be ' \
                                 'added to a running DAG run. Use dynamic task mapping (.expand) in the DAG instead.'
    end

    private

    def merge_into(what, target, params, kwargs)
      merged = {}
      params.each { |k, v| merged[k.to_s] = v }
      kwargs.each { |k, v| merged[k.to_s] = v }
      merged.each do |key, value|
        unless json_value?(value)
          raise TypeError, "Digdag.env.#{what}: the value of '#{key}' is not JSON-serialisable " \
                           "(#{value.class}); store only String, Integer, Float, true/false, nil, Array and Hash values"
        end
      end
      target.merge!(merged)
    end

    def json_value?(value)
      case value
      when String, Integer, TrueClass, FalseClass, NilClass, Symbol then true
      when Float then value.finite?
      when Array then value.all? { |v| json_value?(v) }
      when Hash then value.all? { |k, v| (k.is_a?(String) || k.is_a?(Symbol)) && json_value?(v) }
      else false
      end
    end
  end

  def self.env
    @env
  end

  def self.env=(env)
    @env = env
  end
end

module DigdagRunner
  module_function

  def deep_symbolize(value)
    case value
    when Hash then value.each_with_object({}) { |(k, v), h| h[k.to_sym] = deep_symbolize(v) }
    when Array then value.map { |v| deep_symbolize(v) }
    else value
    end
  end

  # Bind a method's parameters by name from params, as Digdag does.
  def bind(method, params, qualname)
    args = []
    kwargs = {}
    positional_open = true
    method.parameters.each do |kind, name|
      key = name.to_s
      case kind
      when :req
        raise ArgumentError, "Method '#{qualname}' requires parameter '#{key}' but not set" unless params.key?(key)
        args << params[key]
      when :opt
        # An optional positional can only be given if every one before it was given.
        positional_open &&= params.key?(key)
        args << params[key] if positional_open
      when :keyreq
        raise ArgumentError, "Method '#{qualname}' requires parameter '#{key}' but not set" unless params.key?(key)
        kwargs[name] = params[key]
      when :key
        kwargs[name] = params[key] if params.key?(key)
      when :keyrest
        deep_symbolize(params).each { |k, v| kwargs[k] = v unless kwargs.key?(k) }
      end
    end
    [args, kwargs]
  end

  def resolve(command, params)
    return [method(command.to_sym), command] unless command.include?('.')

    klass_name, _, meth = command.rpartition('.')
    klass = Object.const_get(klass_name)
    if klass.is_a?(Class) && klass.public_method_defined?(meth)
      init_args, init_kwargs = bind(klass.instance_method(:initialize), params, "#{klass_name}#initialize")
      instance = klass.new(*init_args, **init_kwargs)
      [instance.method(meth), "#{klass_name}##{meth}"]
    elsif klass.respond_to?(meth)
      [klass.method(meth), "#{klass_name}.#{meth}"]
    else
      raise NoMethodError, "#{klass_name} has no public method '#{meth}' (neither an instance nor a class method)"
    end
  end

  # The backtrace of the user's code, without this runner's own frames.
  def user_backtrace(error)
    (error.backtrace || []).reject { |line| line.start_with?(__FILE__) }.map { |line| "  from #{line}" }
  end

  def run(argv)
    command, in_file, out_file, required = argv
    # Output goes to a pipe, where Ruby buffers it: write it through so that the task log shows
    # each line as it is printed.
    $stdout.sync = true
    $stderr.sync = true
    params = JSON.parse(File.read(in_file))['params']
    env = Digdag::Env.new(params)
    Digdag.env = env
    $LOAD_PATH.unshift(Dir.pwd)
    error = nil
    exit_code = 0
    begin
      require required if required && !required.empty?
      callable, qualname = resolve(command, params)
      args, kwargs = bind(callable, params, qualname)
      callable.call(*args, **kwargs)
    rescue SystemExit => e
      unless e.success?
        exit_code = e.status
        error = { 'class' => 'SystemExit', 'message' => "the task called exit(#{e.status})",
                  'backtrace' => user_backtrace(e) }
      end
    rescue Exception => e # rubocop:disable Lint/RescueException -- every error of the user's code is reported
      exit_code = 1
      error = { 'class' => e.class.name, 'message' => e.message, 'backtrace' => user_backtrace(e) }
    end
    output = { 'subtask_config' => env.subtask_config, 'export_params' => env.export_params,
               'store_params' => env.store_params }
    output['error'] = error if error
    File.write(out_file, JSON.generate(output))
    $stdout.flush
    exit_code
  end
end

exit(DigdagRunner.run(ARGV))
