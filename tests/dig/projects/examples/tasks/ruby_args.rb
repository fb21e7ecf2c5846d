class Greeter
  def one(who:)
    puts "one: hello #{who}"
  end

  def self.two(who:, greeting: "hi")
    puts "two: #{greeting} #{who}"
  end
end
